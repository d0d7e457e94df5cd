"""Every process publishes its pool figures to Redis; the check reads and sums the fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connections

from config.redis import get_redis
from health import fleet, publisher
from health.checks import DatabaseCheck
from health.fleet import CounterHistory
from health.models import Alert
from health.selectors import fleet_pool_stats
from health.services.publishing import pool_stats_collect, pool_stats_publish
from health.services.runs import health_check_run
from tests.health.conftest import other_web_doc
from tests.support.processes import ROOT, gunicorn, service_env

pytestmark = pytest.mark.django_db(transaction=True)

FAST_PUBLISH = {"HEALTH_PUBLISH_INTERVAL": "1", "HEALTH_CHECK_INTERVAL": "2"}


def test_publishing_writes_one_expiring_key_per_process() -> None:
    doc = pool_stats_publish()
    key = fleet.doc_key(doc["process"])
    ttl = get_redis().ttl(key)
    assert 0 < ttl <= 3 * 5
    stored = json.loads(get_redis().get(key))
    assert stored["pid"] == os.getpid() and stored["role"] == "web"
    assert stored["db"]["max"] == 20 and stored["db"]["min"] == 5
    assert set(stored["db"]) >= {"in_use", "idle", "size", "waiting", "requests_num", "requests_errors",
                                 "requests_wait_ms", "recent"}
    assert any(d["process"] == doc["process"] for d in fleet_pool_stats())


def test_counters_are_read_never_reset() -> None:
    pool = connections["default"].pool
    conn = pool.getconn()
    pool.putconn(conn)
    before = pool.get_stats()["requests_num"]
    pool_stats_collect()
    pool_stats_collect()
    assert pool.get_stats()["requests_num"] >= before >= 1  # pop_stats() would have zeroed it


def test_publishing_never_binds_the_database_pool_before_the_process_uses_it() -> None:
    # A request before the test database is set up (schemathesis loads the OpenAPI document
    # at collection time) starts the publisher; had it created Django's pool then, the pool
    # would keep the development database's name for the whole test session.
    code = "\n".join([
        "import time, django",
        "django.setup()",
        "from django.db import connection",
        "from django.test import Client",
        "from health import fleet",
        "Client(HTTP_HOST='localhost').get('/health/live')",
        "time.sleep(0.5)",
        "from health import publisher",
        "assert publisher._started",
        "connection.settings_dict['NAME'] = 'postgres'  # what the test runner does",
        "with connection.cursor() as cursor:",
        "    cursor.execute('SELECT current_database()')",
        "    print('DB=' + cursor.fetchone()[0])",
    ])
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=service_env(HEALTH_PUBLISH_INTERVAL="1"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "DB=postgres" in result.stdout.splitlines()


def test_recent_figures_are_differences_over_the_window() -> None:
    history = CounterHistory()
    assert history.recent(100.0, {"errors": 2}, window=30) == {"errors": 2}  # nothing older: all of it
    assert history.recent(110.0, {"errors": 5}, window=30) == {"errors": 5}
    assert history.recent(131.0, {"errors": 6}, window=30) == {"errors": 4}  # since t=100
    assert history.recent(145.0, {"errors": 6}, window=30) == {"errors": 1}  # since t=110
    assert history.recent(200.0, {"errors": 6}, window=30) == {"errors": 0}


def test_requests_never_publish_on_their_own_path(client, monkeypatch) -> None:
    writes = []
    monkeypatch.setattr(fleet, "write", lambda doc, **kw: writes.append(doc))
    for _ in range(100):
        assert client.get("/health/live").status_code == 200
    assert publisher._started  # the first request started this process's publisher thread
    assert len(writes) <= 1  # at most one timed publication happened during the burst


@pytest.mark.slow
def test_a_web_process_publishes_from_its_first_request_and_forgets_itself_on_exit(tmp_path) -> None:
    with gunicorn(threads=2, log=tmp_path / "web.log", **FAST_PUBLISH):
        first = other_web_doc()
        assert first is not None, (tmp_path / "web.log").read_text()[-2000:]
        later = other_web_doc(lambda doc: doc["at"] >= first["at"] + 1.5, timeout=5)
        assert later is not None and later["process"] == first["process"]
        assert get_redis().ttl(fleet.doc_key(first["process"])) <= 3
    assert get_redis().get(fleet.doc_key(first["process"])) is None


@pytest.mark.slow
def test_two_processes_publish_and_the_check_sums_them(tmp_path, ticker) -> None:
    pool = connections["default"].pool
    with gunicorn(threads=6, log=tmp_path / "web.log", DB_MIN_CONNECTIONS="1", **FAST_PUBLISH) as base:
        with ThreadPoolExecutor(3) as executor:
            holders = [executor.submit(requests.get, f"{base}/_test/hold-db?ms=3000", timeout=15) for _ in range(3)]
            web = other_web_doc(lambda doc: doc["db"] is not None and doc["db"]["in_use"] == 3)
            held = [pool.getconn() for _ in range(4)]
            try:
                run = health_check_run(now=ticker(), checks=[DatabaseCheck()])
            finally:
                for conn in held:
                    pool.putconn(conn)
            assert all(h.result().status_code == 200 for h in holders)
    assert web is not None
    snapshot = run.snapshots.get()
    pools = {p["process"]: p for p in snapshot.figures["pools"]}
    own = fleet.process_id()
    assert pools[web["process"]]["in_use"] == 3
    assert pools[own]["in_use"] >= 4
    assert snapshot.in_use == sum(p["in_use"] for p in pools.values()) >= 7
    assert snapshot.maximum == sum(p["max"] for p in pools.values()) >= 40
    assert snapshot.figures["processes"] == len(pools) >= 2
    assert snapshot.figures["shared"] is True
    # The server's own view agrees: our web processes hold at least those seven.
    assert snapshot.figures["server"]["by_application"]["payops-web"] >= 7
    assert snapshot.figures["server"]["pool_max_total"] == snapshot.maximum + snapshot.figures["answers_max"]


def test_a_process_that_recorded_an_answer_publishes_its_lane_and_the_check_counts_it(ticker) -> None:
    from config.postgres.answers_pool import answer_connection

    with answer_connection() as conn:  # what recording a gateway answer does
        conn.execute("SELECT 1")
    doc = pool_stats_publish()
    lane = doc["db_answers"]
    assert (lane["max"], lane["min"]) == (2, 1)  # max(1, DB_MAX_CONNECTIONS ÷ 10) beside the pool of 20
    assert lane["requests_num"] >= 1 and "recent" in lane
    run = health_check_run(now=ticker(), checks=[DatabaseCheck()])
    figures = run.snapshots.get(component="database").figures
    own = next(p for p in figures["pools"] if p["process"] == doc["process"])
    assert own["answers_max"] == 2
    assert figures["server"]["pool_max_total"] == figures["max"] + figures["answers_max"] >= 22


def test_pools_that_could_outgrow_the_server_are_a_warning(settings, ticker) -> None:
    settings.DB_CONNECTION_RESERVE = 90  # 100 max_connections: the pools' 20 no longer fit
    health_check_run(now=ticker(), checks=[DatabaseCheck()])
    alert = Alert.objects.get(component="database", condition="pool_oversubscribed")
    assert alert.severity == "warning"
    assert "the server has 10" in alert.message


def test_with_redis_away_the_check_falls_back_to_this_process_and_says_so(settings, ticker) -> None:
    from config.redis import get_redis as cached

    cached.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        time.sleep(0.3)  # past the fleet view shared by one run's checks
        run = health_check_run(now=ticker(), checks=[DatabaseCheck()])
    finally:
        cached.cache_clear()
    snapshot = run.snapshots.get()
    assert snapshot.status == "ok"
    assert snapshot.figures["shared"] is False
    assert [p["process"] for p in snapshot.figures["pools"]] == [fleet.process_id()]
