#!/usr/bin/env python
"""Scenario 5, PostgreSQL "restarted" mid-load: the TCP proxy in front of PostgreSQL drops
every connection and refuses new ones for a few seconds, then listens again; no fleet
process is restarted.

Holds: no 500; the API answers 503 + Retry-After while the database is away; payments flow
again by themselves; no payment lost or duplicated: every payment answered 201/202 exists,
each has at most one intent at the gateway, and once the clients retried their keys and the
fleet settled, none is unknown and the ledger equals the gateway.

    .venv/bin/python bench/fleet/pg_restart.py [--seconds 30] [--outage-at 10] [--outage 5] [--clients 8]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Load, Payer  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402

TITLE = "5. PostgreSQL restarted mid-load"
AMOUNT = 1500


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_workers=2, threads=8, celery_workers=1, log_dir=log_dir,
                 DB_CONNECTION_TIMEOUT="1000")


def run(fleet: Fleet, *, api_key: str, run_id: str, clients: int, seconds: float, outage_at: float,
        outage: float) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()
    marks: dict[str, float] = {}

    def work(session, load: Load, i: int, running) -> None:  # type: ignore[no-untyped-def]
        n = 0
        while running():
            n += 1
            payer.pay_once(session, load, common.new_key(), AMOUNT, n)

    def outage_driver() -> None:
        time.sleep(outage_at)
        marks["cut"] = time.monotonic() - load.t0
        fleet.pg_proxy.cut()
        time.sleep(outage)
        fleet.pg_proxy.restore()
        marks["restored"] = time.monotonic() - load.t0

    threading.Thread(target=outage_driver, daemon=True).start()
    common.run_clients(clients, seconds, work, load)
    hits = load.hits
    cut, restored = marks["cut"], marks["restored"]
    during = [h for h in hits if cut <= h.started < restored]
    after = [h for h in hits if h.started >= restored]
    first_ok = min((h.started + h.elapsed for h in after if h.status == 201), default=None)
    recovered_after = None if first_ok is None else first_ok - restored
    # Past the recovery, a healthy stream: every request from 2 s after the first success on.
    settled_stream = [h for h in after if first_ok is not None and h.started > first_ok + 2]

    unfinished = sorted({h.idem for h in hits if h.status != 201})
    final = common.retry_until_final(payer, unfinished, AMOUNT, timeout=60.0)
    left = common.settle_all(fleet, run_id, timeout=40.0)
    ledger = common.ledger_check(fleet.sandbox, run_id, hits + list(final.values()))
    five03 = [h for h in hits if h.status == 503]
    r = Result()
    r.figures = {
        "clients": clients, "seconds": seconds, "cut_at_s": round(cut, 1), "outage_s": round(restored - cut, 1),
        "requests": len(hits), "by_status": common.status_counts(hits),
        "during_outage": common.status_counts(during), "codes_503": sorted({h.code for h in five03}),
        "p99_503_ms": round(common.pct([h.elapsed for h in five03], 99) * 1000) if five03 else None,
        "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
        "after_recovery": common.status_counts(settled_stream),
        "unfinished_retried": len(unfinished), "retried_final": common.status_counts(list(final.values())),
        "left_unsettled": len(left), "ledger": _flat(ledger),
    }
    r.checks = {
        "no 500": not any(h.status >= 500 and h.status != 503 for h in hits),
        "no connection errors": not any(h.status == 0 for h in hits),
        "503 while the database is away": any(h.status == 503 for h in during),
        "every 503 has Retry-After": all((h.retry_after or "").isdigit() for h in five03),
        "payments flow again without restarting anything (within 10 s)": recovered_after is not None
        and recovered_after <= 10,
        "all 201 from 2 s after recovery": bool(settled_stream) and all(h.status == 201 for h in settled_stream),
        "every unfinished payment succeeds on retry": len(final) == len(unfinished)
        and all(h.status == 201 for h in final.values()),
        "no payment lost or duplicated (ledger = gateway)": common.ledger_ok(ledger),
    }
    return r


def _flat(ledger: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in ledger.items()}


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"{f['clients']} clients create payments for {f['seconds']} s through 2 gunicorn workers (plus a Celery "
        f"worker); at {f['cut_at_s']} s the TCP proxy in front of PostgreSQL drops every connection and refuses "
        f"new ones for {f['outage_s']} s, then listens again. Clients retry what did not answer 201 with the same "
        "Idempotency-Key afterwards; the fleet settles the rest.",
        "", "| figure | value |", "|---|---|",
        f"| requests | {f['requests']} |", f"| by status | {f['by_status']} |",
        f"| sent during the outage, by status | {f['during_outage']} |",
        f"| 503 codes | {', '.join(f['codes_503']) or '-'} (p99 {f['p99_503_ms']} ms) |",
        f"| first 201 after the database came back | {f['recovered_after_s']} s |",
        f"| from 2 s after that, by status | {f['after_recovery']} |",
        f"| keys not 201 under load, retried | {f['unfinished_retried']} → {f['retried_final']} |",
        f"| still unsettled at the end | {f['left_unsettled']} |",
        f"| ledger | {f['ledger']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--outage-at", type=float, default=10)
    parser.add_argument("--outage", type=float, default=5)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database)
    with fleet_for(args.database) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), clients=args.clients,
                     seconds=args.seconds, outage_at=args.outage_at, outage=args.outage)
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
