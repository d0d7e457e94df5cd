"""Health runs: one per tick, all-or-nothing, on time with the real beat and worker, and
surviving a worker killed in the middle of one."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from config.redis import get_redis
from health.checks import default_checks
from health.checks.base import Reading
from health.models import Alert, ComponentSnapshot, HealthCheckRun
from health.services.runs import health_check_run, health_history_prune
from tests.health.conftest import StubCheck
from tests.support.processes import BIN, ROOT, _stop, service_env, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_stores_one_snapshot_per_component_with_its_figures() -> None:
    run = health_check_run()
    assert run is not None
    snapshots = {s.component: s for s in run.snapshots.all()}
    assert set(snapshots) == {c.name for c in default_checks()}
    database = snapshots["database"]
    assert database.status == "ok"
    assert database.maximum >= 20 and database.in_use >= 0
    assert database.figures["server"]["max_connections"] == 100
    assert database.latency_ms is not None
    assert snapshots["redis"].status == "ok" and snapshots["redis"].latency_ms < 100
    assert all(s.checked_at == run.started_at for s in snapshots.values())


def test_a_slow_check_is_cut_at_its_budget_and_never_stalls_the_others() -> None:
    slow = StubCheck("slow-one", Reading(), delay=3.0, budget=0.3)
    started = time.monotonic()
    run = health_check_run(checks=[slow, StubCheck("redis"), StubCheck("database")])
    elapsed = time.monotonic() - started
    assert elapsed < 1.5
    statuses = dict(run.snapshots.values_list("component", "status"))
    assert statuses == {"slow-one": "down", "redis": "ok", "database": "ok"}
    assert run.status == "down"
    assert Alert.objects.get().condition == "timeout"
    assert "no answer within 300 ms" in run.snapshots.get(component="slow-one").message


def test_a_check_still_running_from_the_last_run_is_not_started_twice(ticker) -> None:
    slow = StubCheck("slow-two", Reading(), delay=1.5, budget=0.2)
    health_check_run(now=ticker(), checks=[slow])
    run = health_check_run(now=ticker(), checks=[slow])
    assert run.snapshots.get().message == "the previous check has not finished yet"
    time.sleep(1.5)
    assert health_check_run(now=ticker(), checks=[slow]).snapshots.get().message.startswith("no answer")


def test_two_beats_sending_the_same_tick_make_one_run() -> None:
    now = timezone.now()
    results = []
    barrier = threading.Barrier(4)

    def tick() -> None:
        barrier.wait()
        try:
            results.append(health_check_run(now=now, checks=[StubCheck("redis")]))
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert HealthCheckRun.objects.count() == 1


def test_without_the_redis_lock_the_database_still_keeps_one_run(settings) -> None:
    from config.redis import get_redis as cached

    now = timezone.now()
    cached.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        first = health_check_run(now=now, checks=[StubCheck("database")])
        second = health_check_run(now=now, checks=[StubCheck("database")])
    finally:
        cached.cache_clear()
    assert first is not None and second is None
    assert HealthCheckRun.objects.count() == 1 and ComponentSnapshot.objects.count() == 1


def test_history_is_pruned_in_batches_after_the_retention_days(settings) -> None:
    settings.HEALTH_RETENTION_DAYS = 7
    with connection.cursor() as cursor:
        # 30 old runs of 5 snapshots and 3 recent ones, straight in SQL like the bench does.
        cursor.execute(
            """
            INSERT INTO health_healthcheckrun (tick, started_at, finished_at, duration_ms, status, ran_on)
            SELECT t, t, t, 10, 'ok', 'bench' FROM (
                SELECT now() - interval '8 days' - g * interval '30 seconds' AS t FROM generate_series(1, 30) g
                UNION ALL
                SELECT now() - g * interval '30 seconds' FROM generate_series(1, 3) g) ticks
            """
        )
        cursor.execute(
            """
            INSERT INTO health_componentsnapshot (run_id, checked_at, component, status, message, figures)
            SELECT r.id, r.started_at, c, 'ok', '', '{}'::jsonb
            FROM health_healthcheckrun r CROSS JOIN unnest(ARRAY['a', 'b', 'c', 'd', 'e']) c
            """
        )
    deleted = health_history_prune(batch=40)
    assert deleted == {"snapshots": 150, "runs": 30}
    assert HealthCheckRun.objects.count() == 3 and ComponentSnapshot.objects.count() == 15
    assert not ComponentSnapshot.objects.filter(checked_at__lt=timezone.now() - timedelta(days=7)).exists()


@pytest.mark.slow
def test_with_the_real_beat_and_worker_a_run_lands_within_one_interval(worker, tmp_path) -> None:
    interval = 2
    env = service_env(PROCESS_ROLE="beat", HEALTH_CHECK_INTERVAL=str(interval), HEALTH_PUBLISH_INTERVAL="1")
    log = open(tmp_path / "beat.log", "wb")
    beat = subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "beat", "--loglevel=INFO", f"--schedule={tmp_path / 'schedule'}"],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )
    try:
        first = wait_until(lambda: HealthCheckRun.objects.order_by("tick").first(), timeout=20, interval=0.1)
        assert first is not None, (tmp_path / "beat.log").read_text()[-2000:]
        # The next tick lands about one interval after the first.
        second = wait_until(lambda: HealthCheckRun.objects.filter(tick__gt=first.tick).order_by("tick").first(),
                            timeout=interval * 3)
    finally:
        _stop(beat)
    assert second is not None
    assert (second.tick - first.tick).total_seconds() == interval
    assert (second.started_at - first.started_at).total_seconds() < interval * 1.5
    assert first.ran_on != f"{os.uname().nodename}:{os.getpid()}"  # the worker ran it, not this process
    assert first.snapshots.count() == len(default_checks())
    assert first.snapshots.get(component="celery").status == "ok"


@pytest.mark.slow
def test_killing_the_worker_mid_run_leaves_no_half_written_run_and_the_next_tick_works(tmp_path) -> None:
    queue = f"health-kill-{os.getpid()}"
    dsn = _dsn()
    locker = psycopg.connect(dsn, autocommit=False)
    worker = _worker(queue, tmp_path / "worker-1.log")
    try:
        # Hold the alert table: the run writes its row and snapshots, then waits here.
        locker.execute("LOCK TABLE health_alert IN ACCESS EXCLUSIVE MODE")
        from health.tasks import health_check_run as task

        task.apply_async(kwargs={"interval": 2}, queue=queue)
        blocked = wait_until(_blocked_backend, timeout=30, interval=0.1)
        assert blocked, (tmp_path / "worker-1.log").read_text()[-3000:]
        # Mid-run for real: the backend inserted the run (holds its table lock) in an open transaction.
        assert _observe(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = %s AND c.relname = 'health_healthcheckrun' AND l.mode = 'RowExclusiveLock'",
            [blocked],
        ) == 1
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        locker.rollback()  # releases the table lock
        assert wait_until(lambda: not _backend_alive(blocked), timeout=15)
        assert HealthCheckRun.objects.count() == 0
        assert ComponentSnapshot.objects.count() == 0

        time.sleep(2)  # the next tick
        worker = _worker(queue, tmp_path / "worker-2.log")
        task.apply_async(kwargs={"interval": 2}, queue=queue)
        run = wait_until(lambda: HealthCheckRun.objects.first(), timeout=30)
        assert run is not None, (tmp_path / "worker-2.log").read_text()[-3000:]
        assert run.snapshots.count() == len(default_checks())
    finally:
        locker.close()
        _stop(worker)
        get_redis().delete(queue)


def _dsn() -> str:
    db = connection.settings_dict
    return f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']} application_name=test-locker"


def _worker(queue: str, log_path) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    log = open(log_path, "ab")
    cmd = [str(BIN / "celery"), "-A", "config", "worker", "--pool=threads", "--concurrency=2", "--loglevel=INFO",
           "--without-gossip", "--without-mingle", "-Q", queue, "-n", f"{queue}-{time.monotonic_ns()}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env=service_env(PROCESS_ROLE="worker"), stdout=log, stderr=log)


def _observe(sql: str, params: list | None = None) -> object:
    # A connection of its own: pg_stat_activity is frozen for the rest of a transaction once read.
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def _blocked_backend() -> int | None:
    return _observe(  # type: ignore[return-value]
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND application_name = 'payops-worker' AND query LIKE %s", ["%health_alert%"],
    )


def _backend_alive(pid: int) -> bool:
    return _observe("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 1
