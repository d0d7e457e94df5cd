#!/usr/bin/env python
"""Scenario 4, the answer lost after the gateway charged, under load: the sandbox's fault
proxy forwards POST /v1/payment_intents, saves the gateway's answer, and then resets the
connection (`reset_after`) with probability ~0.3, for the whole run.

Holds: no 500 and no connection error at our API; zero duplicate charges (each payment has
at most one intent at the gateway); once the clients retried what did not answer 201 with
the same Idempotency-Key and the fleet settled the rest, every payment is settled to the
gateway's truth (none unknown/processing, none pending or failed but charged) and our ledger
totals equal the gateway's.

    .venv/bin/python bench/fleet/lost_answer.py [--seconds 40] [--probability 0.3] [--clients 6]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Load, Payer  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402

TITLE = "4. Answer lost after the gateway charged"
AMOUNT = 1300


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_workers=2, threads=4, celery_workers=1, log_dir=log_dir)


def run(fleet: Fleet, *, api_key: str, run_id: str, clients: int, seconds: float, probability: float,
        pause: float = 0.02) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()
    before = fleet.sandbox.stats()
    fleet.sandbox.fault("reset_after", probability=probability, method="POST", path_prefix="/v1/payment_intents")

    def work(session, load: Load, i: int, running) -> None:  # type: ignore[no-untyped-def]
        n = i
        while running():
            n += 1
            payer.pay_once(session, load, common.new_key(), AMOUNT, n)
            common.time.sleep(pause)

    try:
        common.run_clients(clients, seconds, work, load)
    finally:
        fleet.sandbox.clear()
    after = fleet.sandbox.stats()
    hits = load.hits
    unfinished = sorted({h.idem for h in hits if h.status != 201})
    final = common.retry_until_final(payer, unfinished, AMOUNT, timeout=60.0)
    left = common.settle_all(fleet, run_id, timeout=60.0)
    ledger = common.ledger_check(fleet.sandbox, run_id, hits + list(final.values()))
    resets = (after.get("faults_applied") or {}).get("reset_after", 0) - \
        (before.get("faults_applied") or {}).get("reset_after", 0)
    r = Result()
    r.figures = {
        "clients": clients, "seconds": seconds, "probability": probability, "requests": len(hits),
        "by_status": common.status_counts(hits), "codes_non_2xx": sorted({h.code for h in hits if h.status >= 300}),
        "p50_p99_201_ms": (round(common.pct([h.elapsed for h in hits if h.status == 201], 50) * 1000),
                           round(common.pct([h.elapsed for h in hits if h.status == 201], 99) * 1000)),
        "gateway_requests": after["requests"] - before["requests"], "answers_lost": resets,
        "replayed": after.get("replayed", 0) - before.get("replayed", 0),
        "unfinished_retried": len(unfinished), "retried_final": common.status_counts(list(final.values())),
        "left_unsettled": len(left), "ledger": _flat(ledger),
    }
    r.checks = {
        "the fault fired (answers lost)": resets > 0,
        "no 500": not any(h.status >= 500 and h.status != 503 for h in hits + list(final.values())),
        "no connection errors": not any(h.status == 0 for h in hits),
        "zero duplicate charges": not ledger["duplicates"] and not ledger["orphans"],
        "every retried key ends 201": len(final) == len(unfinished) and all(h.status == 201 for h in final.values()),
        "every payment settled to the gateway's truth": not ledger["unsettled"] and not ledger["pending_charged"]
        and not ledger["failed_charged"] and not ledger["succeeded_mismatch"] and not ledger["answered_missing"],
        "ledger total = gateway total": ledger["ledger_total"] == ledger["gateway_total"],
    }
    return r


def _flat(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in ledger.items()}


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"{f['clients']} clients create payments for {f['seconds']} s through 2 gunicorn workers (plus a Celery "
        f"worker); the sandbox proxy lets the gateway charge, saves its answer and resets the connection "
        f"(`reset_after`) on {f['probability']:.0%} of POST /v1/payment_intents. Afterwards the clients retry what "
        "did not answer 201 with the same Idempotency-Key, and the fleet settles the rest.",
        "", "| figure | value |", "|---|---|",
        f"| requests | {f['requests']} |", f"| by status | {f['by_status']} |",
        f"| non-2xx codes | {', '.join(f['codes_non_2xx']) or '-'} |",
        f"| 201 latency p50 / p99 | {f['p50_p99_201_ms'][0]} / {f['p50_p99_201_ms'][1]} ms |",
        f"| gateway requests / answers lost / replayed by the gateway | {f['gateway_requests']} / "
        f"{f['answers_lost']} / {f['replayed']} |",
        f"| keys not 201 under load, retried | {f['unfinished_retried']} → {f['retried_final']} |",
        f"| still unsettled at the end | {f['left_unsettled']} |",
        f"| ledger | {f['ledger']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--probability", type=float, default=0.3)
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database)
    with fleet_for(args.database) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), clients=args.clients, seconds=args.seconds,
                     probability=args.probability)
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
