from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.health.conftest import other_web_doc
from tests.support.processes import gunicorn


@pytest.mark.django_db
def test_live_answers_without_dependencies(client) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_ready_reports_the_database_only(client) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert set(body["checks"]) == {"database"}


@pytest.mark.django_db(transaction=True)
def test_ready_stays_200_when_redis_is_unreachable(client, settings) -> None:
    from config.redis import get_redis

    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        response = client.get("/health/ready")
        # The payment path itself works without Redis: the check is not just skipped.
        assert client.get("/health/live").status_code == 200
    finally:
        get_redis.cache_clear()
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_once_the_process_is_shutting_down(client) -> None:
    from config.shutdown import shutdown_begin, shutdown_cancel

    assert client.get("/health/ready").status_code == 200
    shutdown_begin()
    try:
        response = client.get("/health/ready")
        live = client.get("/health/live")
    finally:
        shutdown_cancel()
    assert response.status_code == 503
    assert response.json()["status"] == "shutting_down"
    assert live.status_code == 200  # stopping is not dead: no restart in the middle of a drain


@pytest.mark.django_db(transaction=True)
def test_a_web_worker_told_to_stop_answers_ready_503_to_what_it_still_serves(client) -> None:
    """Readiness in a process whose stop signal arrived (the gunicorn worker's handle_exit calls
    shutdown_begin): 503, so the balancer stops sending while the last payments finish. Probes
    have threads of their own, so one sent before the signal is answered at once, not queued."""
    from config.shutdown import shutdown_begin, shutdown_cancel

    assert client.get("/health/ready").status_code == 200
    shutdown_begin()
    try:
        answer = client.get("/health/ready")
    finally:
        shutdown_cancel()
    assert answer.status_code == 503, answer.content
    assert answer.json()["status"] == "shutting_down"
    assert client.get("/health/live").status_code == 200  # alive all the same: it is finishing its work


def test_the_stop_signal_marks_a_web_worker_as_shutting_down(tmp_path) -> None:
    """SIGTERM to a worker holding a request: the request it took still completes (readiness
    answers 503 from the signal on, tested in-process above)."""
    with gunicorn(threads=1, log=tmp_path / "web.log", HEALTH_PUBLISH_INTERVAL="1") as base:
        with ThreadPoolExecutor(1) as executor:
            held = executor.submit(requests.get, f"{base}/_test/hold-db?ms=1500", timeout=15)
            worker = other_web_doc(lambda doc: doc["web"] and doc["web"]["busy"] == 1)
            assert worker is not None, (tmp_path / "web.log").read_text()[-2000:]
            os.kill(worker["pid"], signal.SIGTERM)
            assert held.result().status_code == 200  # what it took is finished


def test_unknown_url_is_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
