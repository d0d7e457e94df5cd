#!/usr/bin/env python
"""Scenario 2, pool pressure: 10 × DB_MAX_CONNECTIONS clients against endpoints that hold
database connections (the test-only /_test/hold-db and the payment API), then quiet.

Holds: no 500; every 503 carries Retry-After and arrives within the acquire timeout +
100 ms; all-2xx within 10 s after the load stops; no leaked connection (every process's
pool says 0 in use, and the pools' sizes add up to what pg_stat_activity shows by
application_name); every payment a client retried with its key ends succeeded, charged once.

    .venv/bin/python bench/fleet/pool_pressure.py [--seconds 60] [--db-max 5] [--acquire-ms 1000]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Load, Payer  # noqa: E402

TITLE = "2. Pool pressure"


@dataclass
class Result:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def fleet_for(database: str, *, db_max: int, acquire_ms: int, clients: int, web_workers: int = 2,
              redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    # Threads for every client if the kernel spread the connections evenly over the workers;
    # it does not, so some requests wait in a gthread worker's queue for a thread. The pool's
    # wait for them counts from their arrival (config/queueing.py); before that, those 503s
    # came after the timeout plus about one hold (1.5 s for 1 s), see docs/reliability.md.
    return Fleet(database=database, redis_db=redis_db, web_workers=web_workers,
                 threads=max(4, -(-clients // web_workers)), celery_workers=1, log_dir=log_dir,
                 DB_MAX_CONNECTIONS=str(db_max), DB_MIN_CONNECTIONS="1", DB_CONNECTION_TIMEOUT=str(acquire_ms))


def run(fleet: Fleet, *, api_key: str, run_id: str, clients: int, seconds: float, hold_ms: int,
        acquire_ms: int, recovery_s: float = 10.0) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()

    def work(session, load: Load, i: int, running) -> None:  # type: ignore[no-untyped-def]
        n = 0
        while running():
            n += 1
            if i % 2 == 0:
                common.call(session, load, "hold", "GET", f"{fleet.base_url}/_test/hold-db?ms={hold_ms}")
            else:
                payer.pay_once(session, load, common.new_key(), 1000, n)

    fleet.wait_publishers(web=fleet.web_workers, worker=0)
    common.run_clients(clients, seconds, work, load)
    stopped = time.monotonic()

    # Quiet: probe both endpoints until a whole round is 2xx.
    recovered_after: float | None = None
    with common.requests.Session() as session:
        probe = Load()
        while time.monotonic() - stopped < recovery_s + 5:
            round_hits = [common.call(session, probe, "hold", "GET", f"{fleet.base_url}/_test/hold-db?ms=10")
                          for _ in range(4)]
            round_hits += [payer.pay_once(session, probe, common.new_key(), 999, k) for k in range(4)]
            if all(200 <= h.status < 300 for h in round_hits):
                recovered_after = time.monotonic() - stopped
                break
            time.sleep(0.2)

    # Leaks: every pool idle, and the pools' sizes equal the server's backends per role.
    leak = _leak_check(fleet)

    # Every payment a client could not finish under pressure, retried with its key.
    unfinished = sorted({h.idem for h in load.hits if h.kind == "pay" and h.status != 201})
    final = common.retry_until_final(payer, unfinished, 1000, timeout=45.0)
    ledger = common.ledger_check(fleet.sandbox, run_id, load.hits + list(final.values()))

    hits = load.hits
    five03 = [h for h in hits if h.status == 503]
    limit = acquire_ms / 1000 + 0.1
    r = Result()
    r.figures = {
        "clients": clients, "seconds": seconds, "hold_ms": hold_ms, "acquire_ms": acquire_ms,
        "requests": len(hits), "by_status": common.status_counts(hits),
        "by_kind": {k: common.status_counts([h for h in hits if h.kind == k]) for k in ("hold", "pay")},
        "codes_503": sorted({h.code for h in five03}),
        "p50_2xx_ms": _ms(common.pct([h.elapsed for h in hits if 200 <= h.status < 300], 50)),
        "p99_2xx_ms": _ms(common.pct([h.elapsed for h in hits if 200 <= h.status < 300], 99)),
        "p50_503_ms": _ms(common.pct([h.elapsed for h in five03], 50)),
        "max_503_ms": round(max((h.elapsed for h in five03), default=0) * 1000),
        "slow_503": sum(1 for h in five03 if h.elapsed > limit),
        "max_503_ms_by_kind": {k: _ms(max((h.elapsed for h in five03 if h.kind == k), default=float("nan")))
                               for k in ("hold", "pay")},
        "slow_503_by_kind": {k: sum(1 for h in five03 if h.kind == k and h.elapsed > limit) for k in ("hold", "pay")},
        "codes_4xx": sorted({f"{h.status} {h.code}" for h in hits if 400 <= h.status < 500}),
        "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
        "leak": leak, "unfinished_retried": len(unfinished),
        "retried_final": common.status_counts(list(final.values())),
        "ledger": {k: v for k, v in ledger.items() if not isinstance(v, list)} | {
            k: len(v) for k, v in ledger.items() if isinstance(v, list)},
    }
    r.checks = {
        "no 500": not any(h.status >= 500 and h.status != 503 for h in hits),
        "no connection errors": not any(h.status == 0 for h in hits),
        "every 503 has Retry-After": all((h.retry_after or "").isdigit() for h in five03),
        f"every 503 within {limit * 1000:.0f} ms": r.figures["slow_503"] == 0,
        "pressure produced 503s": bool(five03),
        f"all-2xx within {recovery_s:.0f} s of the load stopping": recovered_after is not None
        and recovered_after <= recovery_s,
        "no leaked connections": leak["ok"],
        "every unfinished payment succeeds on retry": all(h.status == 201 for h in final.values())
        and len(final) == len(unfinished),
        "ledger matches the gateway": common.ledger_ok(ledger),
    }
    return r


def _leak_check(fleet: Fleet, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(1.5)  # a publication interval and a half: documents from after the quiet
        docs = [d for d in fleet.fleet_docs() if d.get("db") and time.time() - d["at"] < 3]
        pools: dict[str, dict[str, int]] = {}
        for d in docs:
            role = f"payops-{d['role']}"
            agg = pools.setdefault(role, {"size": 0, "in_use": 0, "processes": 0})
            agg["size"] += d["db"]["size"]
            agg["in_use"] += d["db"]["in_use"]
            agg["processes"] += 1
        server = common.pg_connections(fleet.database)
        ok = bool(pools) and all(p["in_use"] == 0 for p in pools.values()) and all(
            server.get(role, 0) == p["size"] for role, p in pools.items()) and all(
            role in pools for role in server if role in ("payops-web", "payops-worker"))
        seen = {"pools": pools, "pg_stat_activity": server, "ok": ok}
        if not ok:
            seen["backends"] = common.pg_backends(fleet.database)
        if ok:
            return seen
    return seen


def _ms(seconds: float) -> int | None:
    return None if seconds != seconds else round(seconds * 1000)


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"{f['clients']} clients (10 × DB_MAX_CONNECTIONS) for {f['seconds']} s against 2 gunicorn workers "
        f"(DB_MAX_CONNECTIONS={f['clients'] // 10}, DB_CONNECTION_TIMEOUT={f['acquire_ms']} ms): half hold a "
        f"connection {f['hold_ms']} ms (`/_test/hold-db`), half create payments (sandbox fast mode).",
        "",
        "| figure | value |", "|---|---|",
        f"| requests | {f['requests']} |",
        f"| by status | {f['by_status']} |",
        f"| hold-db / payments by status | {f['by_kind']['hold']} / {f['by_kind']['pay']} |",
        f"| 503 codes | {', '.join(f['codes_503']) or '-'} |",
        f"| 2xx latency p50 / p99 | {f['p50_2xx_ms']} / {f['p99_2xx_ms']} ms |",
        f"| 503 latency p50 / max | {f['p50_503_ms']} / {f['max_503_ms']} ms ({f['slow_503']} over the limit) |",
        f"| 503 max by endpoint (hold-db, payment) | {f['max_503_ms_by_kind']} ms; over the limit: "
        f"{f['slow_503_by_kind']} |",
        f"| 4xx answers | {', '.join(f['codes_4xx']) or '-'} |",
        f"| all-2xx again after the load stopped | {f['recovered_after_s']} s |",
        f"| pools after (sum per role) | {f['leak'].get('pools')} |",
        f"| pg_stat_activity by application_name | {f['leak'].get('pg_stat_activity')} |",
        f"| payments not 201 under load, retried with their key | {f['unfinished_retried']} → "
        f"{f['retried_final']} |",
        f"| ledger | {f['ledger']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--db-max", type=int, default=5)
    parser.add_argument("--acquire-ms", type=int, default=1000)
    parser.add_argument("--hold-ms", type=int, default=500)
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database)
    clients = 10 * args.db_max
    with fleet_for(args.database, db_max=args.db_max, acquire_ms=args.acquire_ms, clients=clients) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), clients=clients, seconds=args.seconds,
                     hold_ms=args.hold_ms, acquire_ms=args.acquire_ms)
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
