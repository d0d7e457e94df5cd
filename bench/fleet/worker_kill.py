#!/usr/bin/env python
"""Scenario 7a, a Celery worker killed with -9 in the middle of its work: once during a health
run (the gateway probe held by a `latency_before` fault, so the kill lands inside the run)
and once during settlement (payments left `unknown` by `reset_after`, then the gateway made
slow with `latency`, the worker killed while a settlement call is in flight). The worker is
the Procfile's threads pool, so the whole process dies and its unacknowledged messages stay
in Redis's `unacked` hash; a restarted worker gets them back after CELERY_VISIBILITY_TIMEOUT
(shortened here) and finishes the work.

Holds: the task was in flight when the worker died (its message in `unacked`, its gateway call
held, nothing stored yet); the interrupted health tick gets exactly one HealthCheckRun, with one
snapshot per component, run by the restarted worker from the redelivered message; every payment
is settled by the redeliveries alone (no sweep is sent), with zero duplicate charges and our
ledger equal to the gateway's.

    .venv/bin/python bench/fleet/worker_kill.py [--rounds 3] [--payments 12] [--visibility 20]
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import requests  # noqa: E402

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Load, Payer  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402
from tests.support.processes import wait_until  # noqa: E402

TITLE = "7a. Worker killed with -9 during a health run and during settlement"
HEALTH_TASK = "health.tasks.health_check_run"
SETTLE_TASK = "payments.tasks.payment_settle_task"
AMOUNT = 1700
# Shortened so that a redelivery comes within a health tick's expiry (0.8 x INTERVAL): the
# visibility timeout must exceed the task time limit plus the longest countdown a worker holds
# (PAYMENT_DEADLINE + 10 s here), see visibility_timeout_check in config/settings_parts/broker.py.
INTERVAL = 40  # s, HEALTH_CHECK_INTERVAL
TIME_LIMIT = 6  # s, CELERY_TASK_TIME_LIMIT (a health run is at most HEALTH_CHECK_TIMEOUT, 4 s)
DEADLINE_MS = 3000  # PAYMENT_DEADLINE: a settlement call's claim is stale 13 s after it began


def fleet_for(database: str, *, visibility: int = 20, redis_db: int = common.SCRIPT_REDIS_DB,
              log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_workers=2, threads=4, celery_workers=0,
                 celery_concurrency=4, log_dir=log_dir,
                 HEALTH_CHECK_INTERVAL=str(INTERVAL), HEALTH_CHECK_TIMEOUT="4000",
                 CELERY_VISIBILITY_TIMEOUT=str(visibility), CELERY_TASK_SOFT_TIME_LIMIT=str(TIME_LIMIT - 1),
                 CELERY_TASK_TIME_LIMIT=str(TIME_LIMIT), PAYMENT_DEADLINE=str(DEADLINE_MS),
                 PAYMENT_SETTLE_DELAYS="1,1,2",
                 # Every call fails on purpose here: the breaker is not what is measured.
                 BREAKER_MINIMUM_CALLS="1000000", LOG_LEVEL="INFO", LOG_FORMAT="json")


def _applied(fleet: Fleet, kind: str) -> int:
    return int((fleet.sandbox.stats().get("faults_applied") or {}).get(kind, 0))


def _received(fleet: Fleet, worker: str, ids: set[str]) -> set[str]:
    """Which of `ids` the worker's log says it received."""
    seen = set()
    for event in common.log_events(fleet.log_dir / f"{worker}.log"):
        message = str(event.get("message", ""))
        if message.startswith("Task ") and message.endswith(" received"):
            task_id = message.split("[", 1)[-1].split("]", 1)[0]
            if task_id in ids:
                seen.add(task_id)
    return seen


def kill_during_health_run(fleet: Fleet, *, victim: str, restart: str, visibility: int) -> dict[str, Any]:
    """Sends one health tick the way beat does, kills `victim` while its gateway probe is held,
    starts `restart`; the figures of what became of that tick."""
    from config import ticks
    from health.checks import default_checks
    from health.models import HealthCheckRun

    before = _applied(fleet, "latency_before")
    fleet.sandbox.fault("latency_before", count=1, method="GET", path_prefix="/v1/balance", delay_ms=15000)
    sent_at = time.time()
    task_id = fleet.send_task(HEALTH_TASK, kwargs={"interval": INTERVAL}, expires=INTERVAL * 0.8,
                            headers=ticks.beat_headers("health-check", INTERVAL, sent_at)).id
    tick = common.dt.datetime.fromtimestamp(ticks.tick_of(sent_at, INTERVAL), tz=common.dt.timezone.utc)
    probe_held = wait_until(lambda: _applied(fleet, "latency_before") > before, timeout=20)
    unacked = any(t["id"] == task_id for t in fleet.unacked_tasks())
    killed = fleet.kill_hard(victim)
    stored_at_kill = HealthCheckRun.objects.filter(tick=tick).count()
    fleet.sandbox.clear()
    still_unacked = any(t["id"] == task_id for t in fleet.unacked_tasks())
    fleet.add_worker(restart)
    run = wait_until(lambda: HealthCheckRun.objects.filter(tick=tick).first(), timeout=visibility + 30, interval=0.2)
    done = time.monotonic()
    time.sleep(3)  # a second run of the tick, if any, would land now
    runs = list(HealthCheckRun.objects.filter(tick=tick))
    redelivered = [e for e in common.log_events(fleet.log_dir / f"{restart}.log")
                   if e.get("category") == "tick_redelivered" and e.get("holder") == task_id]
    return {
        "in_flight": bool(probe_held) and unacked and stored_at_kill == 0, "probe_held": bool(probe_held),
        "unacked_at_kill": unacked, "unacked_after_kill": still_unacked, "stored_at_kill": stored_at_kill,
        "runs_for_tick": len(runs), "snapshots": [r.snapshots.count() for r in runs],
        "components": len(default_checks()), "run_by_redelivery": bool(redelivered) and run is not None,
        "kill_to_run_s": round(done - killed, 1) if run is not None else None,
        "run_status": run.status if run is not None else None,
    }


def kill_during_settlement(fleet: Fleet, *, victim: str, restart: str, api_key: str, run_id: str, payments: int,
                           visibility: int) -> dict[str, Any]:
    """Makes `payments` payments unknown, makes the gateway slow, kills `victim` while a
    settlement call is held at the gateway, starts `restart`; what became of the payments."""
    from payments.models import Payment

    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()
    fleet.sandbox.fault("reset_after", method="POST", path_prefix="/v1/payment_intents")
    with requests.Session() as session:
        for n in range(payments):
            payer.pay_once(session, load, common.new_key(), AMOUNT, n)
    # From here the gateway charges but holds every answer far beyond PAYMENT_TIMEOUT.
    fleet.sandbox.clear()
    fleet.sandbox.fault("latency", method="POST", path_prefix="/v1/payment_intents", delay_ms=30000)
    mine = Payment.objects.filter(metadata__fleet_run=run_id)

    def settling() -> list[str]:
        in_flight = fleet.sandbox.stats().get("in_flight", 0)
        processing = list(mine.filter(status="processing").values_list("id", flat=True))
        return processing if in_flight and processing else []

    processing = wait_until(settling, timeout=30)
    unacked = [t for t in fleet.unacked_tasks() if t["task"] == SETTLE_TASK]
    killed = fleet.kill_hard(victim)
    statuses_at_kill = dict(Counter(mine.values_list("status", flat=True)))
    fleet.sandbox.clear()
    fleet.add_worker(restart)
    left = wait_until(lambda: not mine.filter(status__in=["unknown", "processing", "pending"]).exists(),
                      timeout=visibility + 45, interval=0.3)
    done = time.monotonic()
    ledger = common.ledger_check(fleet.sandbox, run_id, load.hits)
    unacked_ids = {t["id"] for t in unacked}
    return {
        "payments": payments, "answers": common.status_counts(load.hits), "statuses_at_kill": statuses_at_kill,
        "processing_at_kill": len(processing or []), "settle_unacked_at_kill": len(unacked),
        "redelivered_received": len(_received(fleet, restart, unacked_ids)),
        "all_settled": bool(left), "kill_to_settled_s": round(done - killed, 1) if left else None,
        "ledger": ledger,
    }


def run(fleet: Fleet, *, api_key: str, run_id: str, rounds: int, payments: int, visibility: int) -> Result:
    worker = "workerA1"
    fleet.add_worker(worker)
    time.sleep(3)  # the worker connects
    health, settle = [], []
    for i in range(rounds):
        restarted = f"worker{chr(ord('A') + i)}2"
        health.append(kill_during_health_run(fleet, victim=worker, restart=restarted, visibility=visibility))
        nxt = f"worker{chr(ord('A') + i + 1)}1"
        settle.append(kill_during_settlement(fleet, victim=restarted, restart=nxt, api_key=api_key,
                                             run_id=f"{run_id}-{i}", payments=payments, visibility=visibility))
        worker = nxt
    ledgers = [s["ledger"] for s in settle]
    r = Result()
    r.figures = {"rounds": rounds, "payments": payments, "visibility": visibility, "health": health,
                 "settle": [{k: v for k, v in s.items() if k != "ledger"} for s in settle],
                 "ledger": [{k: (len(v) if isinstance(v, list) else v) for k, v in lg.items()} for lg in ledgers]}
    r.checks = {
        "health run in flight at each kill (message unacked, probe held, nothing stored)":
            all(h["in_flight"] for h in health),
        "interrupted tick: exactly one HealthCheckRun, one snapshot per component":
            all(h["runs_for_tick"] == 1 and h["snapshots"] == [h["components"]] for h in health),
        "the tick was run by the redelivered message": all(h["run_by_redelivery"] for h in health),
        "settlement in flight at each kill (call held at the gateway)":
            all(s["processing_at_kill"] >= 1 and s["settle_unacked_at_kill"] >= 1 for s in settle),
        "every payment settled by redelivery alone (no sweep)": all(s["all_settled"] for s in settle),
        "zero duplicate charges": all(not lg["duplicates"] and not lg["orphans"] for lg in ledgers),
        "ledger = gateway": all(common.ledger_ok(lg) for lg in ledgers),
    }
    return r


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"A Celery worker (threads pool, concurrency 4) is killed with SIGKILL {f['rounds']} time(s) during a "
        "health run (gateway probe held by `latency_before`) and as often during settlement "
        f"({f['payments']} payments left `unknown` by `reset_after`, then every gateway answer held 30 s by "
        f"`latency`); a restarted worker takes over. CELERY_VISIBILITY_TIMEOUT={f['visibility']} s "
        f"(CELERY_TASK_TIME_LIMIT={TIME_LIMIT} s, PAYMENT_DEADLINE={DEADLINE_MS} ms, "
        f"HEALTH_CHECK_INTERVAL={INTERVAL} s). No beat and no sweep: only redeliveries finish the work.",
        "", "| round | health: in flight at kill / runs for the tick / snapshots / kill → run stored | "
        "settlement: processing / settle messages unacked at kill / redelivered / kill → all settled |",
        "|---|---|---|",
    ]
    for i, (h, s) in enumerate(zip(f["health"], f["settle"], strict=False), start=1):
        lines.append(
            f"| {i} | {'yes' if h['in_flight'] else 'no'} / {h['runs_for_tick']} / {h['snapshots']} of "
            f"{h['components']} / {h['kill_to_run_s']} s | {s['processing_at_kill']} / {s['settle_unacked_at_kill']} / "
            f"{s['redelivered_received']} / {s['kill_to_settled_s']} s |")
    lines += ["", "| ledger per round | value |", "|---|---|",
              *[f"| {i} | {lg} |" for i, lg in enumerate(f["ledger"], start=1)],
              *common.verdict_lines(r.checks)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    common.add_redis_db_option(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payments", type=int, default=12)
    parser.add_argument("--visibility", type=int, default=20, help="CELERY_VISIBILITY_TIMEOUT, s")
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database, args.redis_db)
    with fleet_for(args.database, visibility=args.visibility, redis_db=args.redis_db) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), rounds=args.rounds,
                     payments=args.payments, visibility=args.visibility)
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
