#!/usr/bin/env python
"""Scenario 7b, two beat processes at once (a deploy that started a second one, a failover
that left the old one running): both send every periodic task, for `--minutes`.

Holds: one HealthCheckRun per health tick and no tick missing between the first and the last,
each with a snapshot of every component; the settlement sweep ran at most once per tick of its
interval; the duplicates were really sent (both beats sent) and skipped, one INFO
`tick_skipped` line each, so every message beat sent is either the tick's one run or a skip.

    .venv/bin/python bench/fleet/two_beats.py [--minutes 10] [--interval 30] [--sweep-interval 60]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402

TITLE = "7b. Two beat processes at once"
HEALTH_TASK = "health.tasks.health_check_run"
SWEEP_TASK = "payments.tasks.payment_settle_sweep"


def fleet_for(database: str, *, interval: int, sweep_interval: int, redis_db: int = common.SCRIPT_REDIS_DB,
              log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_masters=0, celery_workers=2, celery_concurrency=4,
                 log_dir=log_dir, HEALTH_CHECK_INTERVAL=str(interval),
                 PAYMENT_SETTLE_SWEEP_INTERVAL=str(sweep_interval), HEALTH_PUBLISH_INTERVAL="1",
                 LOG_LEVEL="INFO", LOG_FORMAT="json")


def run(fleet: Fleet, *, seconds: float, interval: int, sweep_interval: int, stagger: float) -> Result:
    from health.checks import default_checks
    from health.models import HealthCheckRun

    started = time.time()
    fleet.add_beat("beat1")
    time.sleep(stagger)
    fleet.add_beat("beat2")
    time.sleep(max(0.0, seconds - stagger))
    for name in ("beat1", "beat2"):
        common._stop(fleet.procs.pop(name))
    stopped = time.time()
    time.sleep(min(interval, 8) + 2)  # the last ticks' runs finish

    runs = list(HealthCheckRun.objects.filter(started_at__gte=_at(started)).order_by("tick")
                .prefetch_related("snapshots"))
    ticks = [int(r.tick.timestamp()) for r in runs]
    expected = list(range(ticks[0], ticks[-1] + interval, interval)) if ticks else []
    missing = sorted(set(expected) - set(ticks))
    components = len(default_checks())
    incomplete = [r.tick.isoformat() for r in runs if r.snapshots.count() != components]

    worker_events = [e for name in fleet.procs if name.startswith("worker")
                     for e in common.log_events(fleet.log_dir / f"{name}.log")]
    claimed = Counter((e.get("scope"), e.get("tick")) for e in worker_events if e.get("category") == "tick_claimed")
    skipped = Counter(e.get("scope") for e in worker_events if e.get("category") == "tick_skipped")
    redelivered = sum(1 for e in worker_events if e.get("category") == "tick_redelivered")
    stored_twice = sum(1 for e in worker_events if e.get("category") == "tick_skipped" and "taken_by" not in e)
    sent = {name: _sent(fleet.log_dir / f"{name}.log") for name in ("beat1", "beat2")}
    sent_health = sum(s.get("health-check", 0) for s in sent.values())
    sent_sweep = sum(s.get("payment-settle-sweep", 0) for s in sent.values())
    health_claims = Counter(t for (scope, t), n in claimed.items() for _ in range(n) if scope == "health")
    sweep_claims = Counter(t for (scope, t), n in claimed.items() for _ in range(n) if scope == "payments:sweep")
    expired = sum(1 for e in worker_events if str(e.get("message", "")).startswith("Discarding revoked task"))

    r = Result()
    r.figures = {
        "seconds": round(stopped - started), "interval": interval, "sweep_interval": sweep_interval,
        "stagger": stagger, "sent": sent, "runs": len(runs), "ticks_expected": len(expected),
        "missing": [_iso(t) for t in missing], "incomplete": incomplete,
        "health_claims": sum(health_claims.values()), "health_ticks_claimed_twice": sum(
            1 for n in health_claims.values() if n > 1),
        "sweep_runs": sum(sweep_claims.values()), "sweep_ticks_twice": sum(1 for n in sweep_claims.values() if n > 1),
        "skipped": dict(skipped), "stored_twice_guard": stored_twice, "redelivered": redelivered,
        "expired_discarded": expired, "sent_health": sent_health, "sent_sweep": sent_sweep,
    }
    r.checks = {
        "both beats sent every entry": all(s.get("health-check", 0) >= 2 for s in sent.values())
        and all(s.get("payment-settle-sweep", 0) >= 1 for s in sent.values()),
        "one HealthCheckRun per tick, each with every component": len(runs) == len(set(ticks)) and not incomplete
        and not r.figures["health_ticks_claimed_twice"],
        "no health tick missing": bool(runs) and not missing,
        "sweep ran at most once per tick": r.figures["sweep_runs"] >= 1 and not r.figures["sweep_ticks_twice"],
        "duplicates seen and skipped (one INFO line each)": skipped.get("health", 0) >= 1
        and skipped.get("health", 0) + len(runs) + expired >= sent_health - 2
        and skipped.get("payments:sweep", 0) + r.figures["sweep_runs"] + expired >= sent_sweep - 2
        and skipped.get("payments:sweep", 0) >= 1,
    }
    return r


def _sent(path: Path) -> dict[str, int]:
    """Messages a beat sent, by entry, from its INFO log ("Scheduler: Sending due task NAME (task)")."""
    counts: Counter[str] = Counter()
    for event in common.log_events(path):
        message = str(event.get("message", ""))
        if message.startswith("Scheduler: Sending due task "):
            counts[message.split()[4]] += 1
    return dict(counts)


def _at(epoch: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def _iso(epoch: int) -> str:
    return _at(epoch).strftime("%H:%M:%S")


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"Two `celery beat` processes (each with its own schedule file, the second started {f['stagger']} s after "
        f"the first) run together for {f['seconds']} s against two threads-pool workers, with "
        f"HEALTH_CHECK_INTERVAL={f['interval']} s and the settlement sweep every {f['sweep_interval']} s. Beat "
        "stamps each message with its tick (config/ticks.py); the first message to claim a tick in Redis runs it, "
        "the other beat's copy is skipped with an INFO `tick_skipped` line.",
        "", "| figure | value |", "|---|---|",
        *[f"| {entry} messages sent by beat1 / beat2 | {f['sent']['beat1'].get(entry, 0)} / "
          f"{f['sent']['beat2'].get(entry, 0)} |" for entry in ("health-check", "payment-settle-sweep")],
        f"| health ticks expected (first to last) / runs stored | {f['ticks_expected']} / {f['runs']} |",
        f"| health ticks missing / runs without every snapshot | {len(f['missing'])} {f['missing'] or ''} / "
        f"{len(f['incomplete'])} |",
        f"| health messages sent / claimed (ran) / skipped | {f['sent_health']} / {f['health_claims']} / "
        f"{f['skipped'].get('health', 0)} |",
        f"| sweep messages sent / ran / skipped / ticks run twice | {f['sent_sweep']} / {f['sweep_runs']} / "
        f"{f['skipped'].get('payments:sweep', 0)} / {f['sweep_ticks_twice']} |",
        f"| duplicates stopped only by PostgreSQL's unique tick | {f['stored_twice_guard']} |",
        f"| expired messages discarded by the workers | {f['expired_discarded']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    common.add_redis_db_option(parser)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=int, default=30, help="HEALTH_CHECK_INTERVAL, s")
    parser.add_argument("--sweep-interval", type=int, default=60, help="PAYMENT_SETTLE_SWEEP_INTERVAL, s")
    parser.add_argument("--stagger", type=float, default=7.0, help="s between starting the two beats")
    args = parser.parse_args(argv)
    common.script_api_key(args.database, args.redis_db)
    with fleet_for(args.database, interval=args.interval, sweep_interval=args.sweep_interval,
                   redis_db=args.redis_db) as fleet:
        result = run(fleet, seconds=args.minutes * 60, interval=args.interval, sweep_interval=args.sweep_interval,
                     stagger=args.stagger)
        text = report(result)
    return common.script_finish(TITLE, text, ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
