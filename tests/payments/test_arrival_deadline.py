"""Deadlines count from arrival: a payment that queued too long for a gunicorn thread is
answered 503 without being started, and a started one answers within its deadline."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from payments.models import Payment
from tests.payments.factories import make_client
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def _pay(base: str, key: str, idempotency_key: str) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    response = requests.post(f"{base}/api/v1/payments", timeout=20, json={
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"},
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key})
    return response, time.perf_counter() - started


def test_a_payment_that_queued_past_its_bound_is_refused_unstarted(gateway, tmp_path) -> None:
    _, key = make_client()
    gateway.fault("latency_before", delay_ms=1500, method="POST", path_prefix="/v1/payment_intents")
    env = {"PAYMENT_GATEWAY_URL": gateway.proxy_url, "PAYMENT_QUEUE_TIMEOUT": "300", "PAYMENT_TIMEOUT": "3000",
           "API_RATE_LIMIT": "1000", "API_RATE_BURST": "1000"}
    with gunicorn(threads=2, log=tmp_path / "web.log", **env) as base, ThreadPoolExecutor(3) as executor:
        before = gateway.stats()["requests"]
        first = [executor.submit(_pay, base, key, f"held-{i}") for i in range(2)]
        time.sleep(0.3)  # both threads are waiting on the gateway now
        late, took = _pay(base, key, "queued")
        held = [f.result() for f in first]
        started = Payment.objects.filter(idempotency_key="queued").exists()
        gateway.clear()
        again, _ = _pay(base, key, "queued")  # the client retries with its key: it goes through
        log = (tmp_path / "web.log").read_text()[-3000:]
    assert [r.status_code for r, _ in held] == [201, 201], log
    assert late.status_code == 503, late.content
    assert late.json()["error"]["code"] == "queue_timeout"
    assert int(late.headers["Retry-After"]) >= 1
    assert took < 1.8  # answered when a thread came free, not after a gateway call of its own
    assert not started  # no payment row: nothing was started for it
    assert gateway.stats()["requests"] - before == 3  # the two held, then the retry
    assert again.status_code == 201, again.content


def test_the_gateway_call_ends_by_the_deadline_counted_from_arrival(gateway, settings) -> None:
    from config import queueing
    from payments.gateway import get_gateway

    gateway.fault("latency_before", delay_ms=900, method="POST", path_prefix="/v1/payment_intents")
    queueing.picked_up(settings.PAYMENT_DEADLINE - 0.4)  # this request waited most of its deadline
    try:
        started = time.perf_counter()
        result = get_gateway().create_payment_intent(
            idempotency_key=f"arrival-{time.time()}", amount=1000, currency="usd",
            payment_method="pm_card_visa", metadata={})
        took = time.perf_counter() - started
    finally:
        queueing.released()
    assert result.outcome == "timeout" and result.uncertain  # sent: settled by asking, never failed
    assert took < 0.8  # 0.4 s left of the deadline, not a full read timeout of 1 s plus retries


def test_a_full_round_already_queued_refuses_at_once_on_the_accept_loop(tmp_path) -> None:
    _, key = make_client()
    with gunicorn(threads=2, log=tmp_path / "web.log") as base, ThreadPoolExecutor(6) as executor:
        # Two requests hold both API threads and four more wait for them: more than a round queued.
        held = [executor.submit(requests.get, f"{base}/_test/hold-db?ms=3000", timeout=15) for _ in range(6)]
        time.sleep(1.0)
        refused, took = _pay(base, key, "busy")
        live = requests.get(f"{base}/health/live", timeout=1)
        answers = [h.result().status_code for h in held]
    assert refused.status_code == 503, refused.content
    assert refused.json()["error"]["code"] == "server_busy"
    assert refused.headers["Retry-After"] == "1"
    assert took < 0.3  # no thread, no wait
    assert not Payment.objects.filter(idempotency_key="busy").exists()
    assert live.status_code == 200
    # Those queued within a round are served; past it they were refused the same way.
    assert answers.count(200) >= 4 and set(answers) <= {200, 503}, answers
