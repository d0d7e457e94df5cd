#!/usr/bin/env python
"""Scenario 6, Redis down mid-load: the TCP proxy in front of Redis closes every connection
and refuses new ones for a while (the breaker's shared state, the rate limiter, the pool
statistics and Celery's broker all go away at once), then listens again; no fleet process
is restarted. The cut is a stopped Redis: what Redis had already answered still arrives.
`--abrupt` cuts like a broken network instead, which also loses the answers in transit: a
task Redis handed to a worker (BRPOP) in that instant is then lost, because kombu's Redis
transport records a task as taken only once the answer has arrived (docs/reliability.md).
`--hang`: Redis hangs instead (stopped, or stuck in a slow command): connections stay open
and new ones are accepted, nothing is answered until it resumes; every client waits out its
timeouts, which is what this variant measures.

Holds: no 500 and no connection error; payments keep flowing (201s all through the cut: each
process falls back to its own breaker, and says so in its log); once Redis is back the
processes say the breaker is shared again and every web process and the worker publish
their pool statistics to Redis again; the ledger equals the gateway. Beat runs the health
check every second (stale after three): while Redis is away no check can run, so reading
/health/status trips the dead-man's switch (a critical health/stale alert), and the first
check after the restore resolves it. Tasks the broker accepted (pings published every
0.2 s by this script, straight to Redis) are not lost: each ran, or is still held by Redis
(its queue, or kombu's unacked hash until the visibility timeout hands it out again).

    .venv/bin/python bench/fleet/redis_down.py [--seconds 35] [--outage-at 8] [--outage 15] [--clients 6]
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datetime import UTC

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Load, Payer  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402

TITLE = "6. Redis down mid-load"
TITLE_HANG = "6b. Redis hangs mid-load"
AMOUNT = 1100


HEALTH_INTERVAL = 1  # s: the dead-man's switch trips after three intervals without a check
STATUS_TOKEN = secrets.token_urlsafe(24)


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_workers=2, threads=4, celery_workers=1, beat=True,
                 log_dir=log_dir, HEALTH_CHECK_INTERVAL=str(HEALTH_INTERVAL), HEALTH_STATUS_TOKEN=STATUS_TOKEN)


def _watch_status(fleet: Fleet, running: threading.Event, seen: list[tuple[float, bool]]) -> None:
    """Reads /health/status as a monitor would: each read of stale data trips the switch."""
    with common.requests.Session() as session:
        while running.is_set():
            try:
                body = session.get(f"{fleet.base_url}/health/status", timeout=2,
                                   headers={"Authorization": f"Bearer {STATUS_TOKEN}"}).json()
                seen.append((time.time(), bool(body.get("stale"))))
            except (common.requests.RequestException, ValueError):
                pass
            time.sleep(0.5)


def _publish_pings(fleet: Fleet, run_id: str, running: threading.Event, sent: list[str]) -> None:
    """Tasks the broker accepted: published straight to Redis (not through the cut proxy)."""
    n = 0
    while running.is_set():
        n += 1
        sent.append(fleet.send_task("health.tasks.ping", args=[f"{run_id}-{n}"]).id)
        time.sleep(0.2)


def _wait_fresh(fleet: Fleet, timeout: float = 60.0) -> None:
    """Until /health/status is fresh: a switch tripped while the fleet started (no health run
    yet) must be cleared before the cut, or the outage would only bump that alert."""
    from health.models import ACTIVE_ALERT_STATUSES, Alert

    deadline = time.monotonic() + timeout
    with common.requests.Session() as session:
        while time.monotonic() < deadline:
            body = session.get(f"{fleet.base_url}/health/status", timeout=5,
                               headers={"Authorization": f"Bearer {STATUS_TOKEN}"}).json()
            if not body.get("stale") and not Alert.objects.filter(
                    component="health", condition="stale", status__in=ACTIVE_ALERT_STATUSES).exists():
                return
            time.sleep(0.5)
    raise TimeoutError("the fleet's health data did not become fresh before the cut")


def _publishing_resumed(fleet: Fleet, marks: dict[str, float], timeout: float) -> tuple[float | None, list[str]]:
    """Seconds from the restore until every web process and the worker of the fleet had
    written a fresh pool-statistics document, and the roles that had."""
    try:
        fleet.wait_publishers(web=fleet.web_workers, worker=fleet.celery_workers, timeout=timeout,
                              since=marks["restored_wall"], interval=0.25)
        after = time.time() - marks["restored_wall"]
    except TimeoutError:
        after = None
    return after, sorted(d["role"] for d in fleet.own_docs() if d["at"] > marks["restored_wall"])


def _tasks_accounted(fleet: Fleet, ids: list[str], timeout: float = 30.0) -> dict[str, int]:
    """Each accepted task: ran (its result is in the backend), held (in the queue or kombu's
    unacked hash, handed out again after the visibility timeout), or lost."""
    from django.conf import settings

    deadline = time.monotonic() + timeout
    while True:
        ran = {i for i in ids if fleet.task_succeeded(i)}
        if len(ran) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    held = {t["id"] for t in fleet.unacked_tasks()}
    client = fleet.redis()
    for raw in client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1):
        try:
            held.add(common.json.loads(raw)["headers"]["id"])
        except (ValueError, KeyError, TypeError):
            continue
    rest = set(ids) - ran
    return {"accepted": len(ids), "ran": len(ran), "held": len(rest & held), "lost": len(rest - held),
            "lost_ids": sorted(rest - held)}


def _log_count(fleet: Fleet, needle: str) -> dict[str, int]:
    counts = {}
    for name in fleet.procs:
        try:
            text = (fleet.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            continue
        counts[name] = text.count(needle)
    return counts


def run(fleet: Fleet, *, api_key: str, run_id: str, clients: int, seconds: float, outage_at: float,
        outage: float, pause: float = 0.02, abrupt: bool = False, hang: bool = False) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()
    marks: dict[str, float] = {}
    fleet.wait_publishers(web=fleet.web_workers, worker=fleet.celery_workers)
    _wait_fresh(fleet)

    def work(session, load: Load, i: int, running) -> None:  # type: ignore[no-untyped-def]
        n = i
        while running():
            n += 1
            payer.pay_once(session, load, common.new_key(), AMOUNT, n)
            time.sleep(pause)

    resumed: dict[str, Any] = {}

    def outage_driver() -> None:
        time.sleep(outage_at)
        marks["cut"] = time.monotonic() - load.t0
        if hang:
            fleet.redis_proxy.pause()
        else:
            fleet.redis_proxy.cut(flush=not abrupt)
        time.sleep(outage)
        if hang:
            fleet.redis_proxy.resume()
        else:
            fleet.redis_proxy.restore()
        marks["restored"] = time.monotonic() - load.t0
        marks["restored_wall"] = time.time()
        # Watched from the restore on, under load: the figure is when publishing resumed.
        resumed["after"], resumed["roles"] = _publishing_resumed(fleet, marks, timeout=seconds + 20)

    watching, seen, pings = threading.Event(), [], []
    watching.set()
    helpers = [threading.Thread(target=_watch_status, args=(fleet, watching, seen), daemon=True),
               threading.Thread(target=_publish_pings, args=(fleet, run_id, watching, pings), daemon=True)]
    for helper in helpers:
        helper.start()
    driver = threading.Thread(target=outage_driver, daemon=True)
    driver.start()
    common.run_clients(clients, seconds, work, load)
    # The first checks after the restore resolve the switch; a few more seconds of reading.
    time.sleep(3 * HEALTH_INTERVAL + 2)
    watching.clear()
    for helper in helpers:
        helper.join(timeout=5)
    hits = load.hits
    cut, restored = marks["cut"], marks["restored"]
    during = [h for h in hits if cut <= h.started < restored]
    after = [h for h in hits if h.started >= restored]
    # Longest stretch without a 201 answer while Redis was away.
    ok_times = sorted(h.started + h.elapsed for h in hits if h.status == 201 and cut <= h.started + h.elapsed
                      <= restored)
    edges = [cut, *ok_times, restored]
    longest_gap = max((b - a for a, b in zip(edges, edges[1:], strict=False)), default=restored - cut)

    # Publishing resumes: every web process and the worker write a fresh document after the restore.
    driver.join()
    resumed_after, fresh_roles = resumed["after"], resumed["roles"]

    switch = _dead_mans_switch(marks, seen)
    tasks = _tasks_accounted(fleet, pings)
    unfinished = sorted({h.idem for h in hits if h.status != 201})
    final = common.retry_until_final(payer, unfinished, AMOUNT, timeout=40.0)
    left = common.settle_all(fleet, run_id, timeout=40.0)
    ledger = common.ledger_check(fleet.sandbox, run_id, hits + list(final.values()))
    fallback = _log_count(fleet, '"category":"circuit_fallback"')
    restored_log = _log_count(fleet, '"category":"circuit_shared_restored"')
    web_names = [n for n in fleet.procs if n.startswith("web")]
    r = Result()
    r.figures = {
        "clients": clients, "seconds": seconds,
        "resumes": "answers again" if hang else "listens again",
        "cut": ("stops answering: connections stay open and new ones are accepted" if hang else
                "closes every connection (" + ("like a broken network: answers in transit lost" if abrupt
                                               else "as a stopped Redis: answers sent arrive")
                + ") and refuses new ones"), "cut_at_s": round(cut, 1), "outage_s": round(restored - cut, 1),
        "requests": len(hits), "by_status": common.status_counts(hits),
        "during_outage": common.status_counts(during), "after_restore": common.status_counts(after),
        "p50_p99_during_ms": (round(common.pct([h.elapsed for h in during], 50) * 1000),
                              round(common.pct([h.elapsed for h in during], 99) * 1000)) if during else None,
        "p50_p99_before_ms": (round(common.pct([h.elapsed for h in hits if h.started < cut], 50) * 1000),
                              round(common.pct([h.elapsed for h in hits if h.started < cut], 99) * 1000)),
        "longest_gap_without_201_s": round(longest_gap, 2),
        "codes_non_2xx": sorted({h.code for h in hits if h.status >= 300}),
        "fallback_logged": fallback, "shared_again_logged": restored_log,
        "publishing_resumed_after_s": None if resumed_after is None else round(resumed_after, 1),
        "fresh_docs": fresh_roles,
        "unfinished_retried": len(unfinished), "retried_final": common.status_counts(list(final.values())),
        "switch": switch, "tasks": tasks,
        "left_unsettled": len(left), "ledger": {k: (len(v) if isinstance(v, list) else v) for k, v in ledger.items()},
    }
    r.checks = {
        "no 500": not any(h.status >= 500 and h.status != 503 for h in hits),
        "no connection errors": not any(h.status == 0 for h in hits),
        "payments keep flowing while Redis is away (201s, no gap > 3 s)": any(h.status == 201 for h in during)
        and longest_gap <= 3.0,
        "every payment sent while Redis is away answers 201": bool(during) and all(h.status == 201 for h in during),
        "web processes fell back to their own breaker (logged)": any(fallback.get(n, 0) for n in web_names),
        "breaker shared again after the restore (logged)": all(restored_log.get(n, 0) >= fallback.get(n, 0) > 0
                                                               or fallback.get(n, 0) == 0 for n in web_names),
        "pool statistics published again (every web process and the worker)": resumed_after is not None,
        "all 201 after the restore": bool(after) and all(h.status == 201 for h in after),
        "no payment lost or duplicated (ledger = gateway)": common.ledger_ok(ledger),
        "the dead-man's switch fired while Redis was away": switch["raised_during_outage"],
        "and cleared by the first checks after the restore": switch["resolved_after_restore"],
        "no task the broker accepted was lost": tasks["accepted"] > 0 and tasks["lost"] == 0,
    }
    return r


def _dead_mans_switch(marks: dict[str, float], seen: list[tuple[float, bool]]) -> dict[str, Any]:
    from health.models import Alert

    cut_wall = marks["restored_wall"] - (marks["restored"] - marks["cut"])
    alerts = list(Alert.objects.filter(component="health", condition="stale", first_seen__gte=_aware(cut_wall))
                  .order_by("first_seen"))
    raised = [a for a in alerts if a.first_seen.timestamp() <= marks["restored_wall"]]
    resolved = [a for a in raised if a.status == "resolved" and a.resolved_at is not None]
    return {
        "stale_reads": sum(1 for _, stale in seen if stale),
        "raised_during_outage": bool(raised),
        "raised_after_cut_s": round(raised[0].first_seen.timestamp() - cut_wall, 1) if raised else None,
        "resolved_after_restore": bool(raised) and len(resolved) == len(raised)
        and all(a.resolved_at.timestamp() >= marks["restored_wall"] for a in resolved),
        "resolved_after_restore_s": round(max(a.resolved_at.timestamp() for a in resolved) - marks["restored_wall"],
                                          1) if resolved else None,
        "alerts": len(alerts),
    }


def _aware(wall: float):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime.fromtimestamp(wall, tz=UTC)


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"{f['clients']} clients create payments for {f['seconds']} s through 2 gunicorn workers (plus a Celery "
        f"worker); at {f['cut_at_s']} s the TCP proxy in front of Redis {f['cut']} for {f['outage_s']} s "
        "(breaker state, rate limiter, API key generation, pool statistics, Celery "
        f"broker), then {f['resumes']}. Beat runs the health check every {HEALTH_INTERVAL} s (stale after three); "
        "a monitor reads /health/status every 0.5 s; this script publishes a ping task every 0.2 s straight to Redis.",
        "", "| figure | value |", "|---|---|",
        f"| requests | {f['requests']} |", f"| by status | {f['by_status']} |",
        f"| sent while Redis was away / after, by status | {f['during_outage']} / {f['after_restore']} |",
        f"| latency p50 / p99 before / during | {f['p50_p99_before_ms']} / {f['p50_p99_during_ms']} ms |",
        f"| longest stretch without a 201 while Redis was away | {f['longest_gap_without_201_s']} s |",
        f"| non-2xx codes | {', '.join(f['codes_non_2xx']) or '-'} |",
        f"| \"own breaker\" / \"shared again\" log lines by process | {f['fallback_logged']} / "
        f"{f['shared_again_logged']} |",
        f"| pool statistics of every process in Redis again after | {f['publishing_resumed_after_s']} s "
        f"({f['fresh_docs']}) |",
        f"| keys not 201 under load, retried | {f['unfinished_retried']} → {f['retried_final']} |",
        f"| dead-man's switch (health/stale) | raised {f['switch']['raised_after_cut_s']} s after the cut, "
        f"resolved {f['switch']['resolved_after_restore_s']} s after the restore; {f['switch']['stale_reads']} "
        f"stale reads of /health/status, {f['switch']['alerts']} alert(s) |",
        f"| tasks the broker accepted (pings) | {f['tasks']} |",
        f"| still unsettled at the end | {f['left_unsettled']} |",
        f"| ledger | {f['ledger']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=35)
    parser.add_argument("--outage-at", type=float, default=8)
    parser.add_argument("--outage", type=float, default=15)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--abrupt", action="store_true", help="cut like a broken network (answers in transit lost)")
    parser.add_argument("--hang", action="store_true", help="Redis hangs (accepts, answers nothing) instead")
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database)
    with fleet_for(args.database) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), clients=args.clients, seconds=args.seconds,
                     outage_at=args.outage_at, outage=args.outage, abrupt=args.abrupt, hang=args.hang)
    return common.script_finish(TITLE_HANG if args.hang else TITLE, report(result), ok=result.ok,
                                write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
