"""Bounded versions of the fleet drills in bench/fleet/: a real loopback fleet (gunicorn
workers, Celery workers, the sandbox, TCP proxies in front of PostgreSQL and Redis) on the
pytest test database and a Redis database of their own (tests/fleet/support.py).

    DATABASE_TEST_NAME=test_payops_fleet REDIS_URL=redis://127.0.0.1:6379/8 \
        .venv/bin/python -m pytest tests/fleet -q
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from django.db import connections

from bench.fleet import common, pg_restart, pool_pressure
from bench.fleet.common import Fleet, Load, Payer
from tests.fleet.support import database, fleet_args
from tests.payments.factories import make_client
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _release_own_connections() -> None:
    """This process's pooled connections to the test database are also named `payops-web`:
    give them back before the fleet's are counted in pg_stat_activity."""
    connections["default"].close()
    connections["default"].close_pool()


def test_pool_pressure_503_fast_with_retry_after_no_leak_no_loss(tmp_path) -> None:
    _, key = make_client()
    _release_own_connections()
    db_max, acquire_ms, clients = 3, 1000, 30
    with pool_pressure.fleet_for(database(), db_max=db_max, acquire_ms=acquire_ms, clients=clients,
                                 **fleet_args(tmp_path)) as fleet:
        result = pool_pressure.run(fleet, api_key=key, run_id=common.new_run_id(), clients=clients, seconds=10,
                                   hold_ms=500, acquire_ms=acquire_ms)
    print(pool_pressure.report(result))
    print("leak check:", result.figures["leak"])
    checks = {k: v for k, v in result.checks.items() if not k.startswith("every 503 within")}
    assert all(checks.values()), (result.checks, result.figures["leak"])
    # Every 503, payments' too, within the timeout plus scheduling slack on a shared 2-CPU
    # box running the suite (strict +100 ms in the docs' full run).
    assert max(result.figures["max_503_ms_by_kind"].values()) <= acquire_ms + 300, result.figures


def test_postgresql_restart_mid_load_loses_and_duplicates_nothing(tmp_path) -> None:
    _, key = make_client()
    with pg_restart.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = pg_restart.run(fleet, api_key=key, run_id=common.new_run_id(), clients=4, seconds=14,
                                outage_at=4, outage=3)
    print(pg_restart.report(result))
    assert result.ok, result.checks


def test_two_web_processes_and_two_workers_share_breaker_and_pool_statistics(tmp_path, worker) -> None:
    _, key = make_client()
    with Fleet(database=database(), web_masters=2, web_workers=1, threads=4, celery_workers=2,
               **fleet_args(tmp_path)) as fleet:
        docs = fleet.wait_publishers(web=2, worker=2)
        live = [d for d in docs if time.time() - d["at"] < 5]
        assert len({d["pid"] for d in live if d["role"] == "web"}) >= 2
        assert len({d["pid"] for d in live if d["role"] == "worker"}) >= 2
        assert all(d["db"] is None or d["db"]["max"] == 5 for d in live)

        payer = Payer(fleet.base_urls, key, common.new_run_id())
        load = Load()
        with requests.Session() as session:
            # Both web processes pay: each has its own pool, published beside the other's.
            assert [payer.pay_once(session, load, uuid.uuid4().hex, 700, n).status for n in range(4)] == [201] * 4

            breaker = fleet.breaker()  # this process on the fleet's Redis: one more member of the fleet
            breaker.force(state="open", reason="fleet drill", until=time.time() + 60, by="tests/fleet")
            try:
                # A process trusts a "closed" it heard for sync_interval (0.25 s): after that, all see it.
                time.sleep(0.5)
                forwarded = fleet.sandbox.stats()["requests"]
                seen: dict[str, str] = {}
                deadline = time.monotonic() + 5
                while len(seen) < 2 and time.monotonic() < deadline:
                    for n, base in enumerate(fleet.base_urls):
                        hit = payer.pay_once(session, load, uuid.uuid4().hex, 700, n)
                        if hit.status == 503 and hit.code == "circuit_open":
                            seen[base] = hit.code
                    time.sleep(0.1)
                assert set(seen) == set(fleet.base_urls)  # both processes see the one open circuit
                assert fleet.sandbox.stats()["requests"] == forwarded  # and none called the gateway
            finally:
                breaker.clear_force(by="tests/fleet")
            deadline = time.monotonic() + 5
            after: list[int] = []
            while time.monotonic() < deadline:
                after = [payer.pay_once(session, load, uuid.uuid4().hex, 700, n).status for n in range(2)]
                if after == [201, 201]:
                    break
                time.sleep(0.2)
            assert after == [201, 201]

        # Pool statistics of both web processes in Redis, with their connections in use.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            webs = [d for d in fleet.fleet_docs() if d["role"] == "web" and d["db"] and time.time() - d["at"] < 3]
            if len(webs) >= 2:
                break
            time.sleep(0.5)
        assert len(webs) >= 2, fleet.fleet_docs()
        server = common.pg_connections(database())
        assert server.get("payops-web", 0) >= 2

        # The fleet's tasks are its own workers' alone: the session's worker (another gateway,
        # the same database) took none of them. It did once, and charged there (issue #15).
        pings = [fleet.send_task("health.tasks.ping", args=[f"isolation-{n}"]).id for n in range(20)]
        assert wait_until(lambda: all(fleet.task_succeeded(t) for t in pings), timeout=20)
        session_log = worker.log_path.read_text(errors="replace")
        assert not [t for t in pings if t in session_log]
