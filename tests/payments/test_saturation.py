"""A slow gateway is used, not cut: calls over the per-process limit are refused at once with
nothing sent, and slow successes lower the limit without opening the breaker."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from payments.gateway import get_gateway, reset_gateway
from payments.models import Payment
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited_gateway(gateway, settings):  # type: ignore[no-untyped-def]
    """Two gateway calls in flight at most; a success over 300 ms is slow."""
    settings.PAYMENT_CONCURRENCY_MAX = 2
    settings.PAYMENT_CONCURRENCY_MIN = 1
    settings.PAYMENT_SLOW_CALL = 0.3
    reset_gateway()
    yield gateway
    get_gateway().breaker.reset()
    reset_gateway()


def _pay_at_once(key: str, n: int) -> list:  # type: ignore[type-arg]
    barrier = threading.Barrier(n)

    def one(i: int):  # type: ignore[no-untyped-def]
        barrier.wait()
        started = time.perf_counter()
        try:
            return Api(key, Client()).pay(idempotency_key=f"sat-{i}"), time.perf_counter() - started
        finally:
            connection.close()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_calls_over_the_limit_are_shed_at_once_and_go_through_on_retry(limited_gateway) -> None:
    gateway = limited_gateway
    _, key = make_client()
    gateway.fault("latency_before", delay_ms=700, method="POST", path_prefix="/v1/payment_intents")
    before = gateway.stats()["requests"]
    answers = _pay_at_once(key, 5)
    codes = sorted(r.status_code for r, _ in answers)
    assert codes == [201, 201, 503, 503, 503], [r.content for r, _ in answers]
    shed = [(r, took) for r, took in answers if r.status_code == 503]
    for response, took in shed:
        assert response.json()["error"]["code"] == "gateway_saturated"
        assert int(response["Retry-After"]) >= 1
        assert took < 0.6  # answered before the admitted calls came back: it waited for nothing
    assert gateway.stats()["requests"] - before == 2  # nothing of the shed three was sent
    assert Payment.objects.filter(status="pending", failure_code="gateway_saturated").count() == 3
    stats = get_gateway().limiter.stats()
    assert stats["shed"] == 3 and stats["in_flight"] == 0
    gateway.clear()
    api = Api(key)
    retried = [api.pay(idempotency_key=f"sat-{i}") for i in range(5)]
    assert sorted(r.status_code for r in retried) == [201] * 5  # replays and first sends alike
    assert Payment.objects.filter(status="succeeded").count() == 5
    for payment in Payment.objects.all():
        assert len(gateway.intents_for("payment_id", payment.id)) == 1


def test_slow_successes_lower_the_limit_and_leave_the_breaker_closed(limited_gateway, settings) -> None:
    gateway = limited_gateway
    _, key = make_client()
    api = Api(key)
    # Slower than PAYMENT_SLOW_CALL (0.3 s), faster than the read timeout (1 s).
    gateway.fault("latency_before", delay_ms=500, method="POST", path_prefix="/v1/payment_intents")
    codes = [api.pay().status_code for _ in range(settings.BREAKER_MINIMUM_CALLS + 2)]
    assert codes == [201] * len(codes)  # every card charged and answered
    snap = get_gateway().breaker.snapshot()
    assert (snap.state, snap.failures) == ("closed", 0)
    stats = get_gateway().limiter.stats()
    assert stats["limit"] == 1 and stats["slow"] == len(codes)
