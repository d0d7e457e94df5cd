"""Breaker, concurrency on one key, timeouts and the pool of the gateway client."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from payments.gateway import get_gateway, reset_gateway
from payments.models import Payment
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_requests_with_one_key_charge_once(gateway) -> None:
    _, key = make_client()
    gateway.fault("latency_before", delay_ms=600, count=1, method="POST", path_prefix="/v1/payment_intents")
    barrier = threading.Barrier(2)

    def one(_):  # type: ignore[no-untyped-def]
        barrier.wait()
        try:
            return Api(key, Client()).pay(idempotency_key="same-key")
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(one, range(2))
    codes = sorted([a.status_code, b.status_code])
    assert codes == [201, 409], [a.content, b.content]
    conflict = a if a.status_code == 409 else b
    assert conflict.json()["error"]["code"] == "idempotency_key_in_use"
    payment = Payment.objects.get()
    assert len(gateway.intents_for("payment_id", payment.id)) == 1
    replay = Api(key).pay(idempotency_key="same-key")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"


@pytest.fixture
def slow_reopening_gateway(gateway, settings):  # type: ignore[no-untyped-def]
    """A breaker that stays open 3 s: long enough to observe on a busy machine."""
    settings.BREAKER_OPEN_SECONDS = 3.0
    reset_gateway()
    yield gateway
    get_gateway().breaker.reset()
    reset_gateway()


def test_breaker_opens_on_failure_rate_and_fails_fast_without_a_connection(slow_reopening_gateway) -> None:
    gateway = slow_reopening_gateway
    _, key = make_client()
    api = Api(key)
    breaker = get_gateway().breaker
    gateway.fault("http_503", method="POST", path_prefix="/v1/payment_intents")  # until cleared
    answers = [api.pay().status_code for _ in range(settings.BREAKER_MINIMUM_CALLS)]
    assert breaker.snapshot().state == "open"
    assert set(answers) <= {202, 503}
    before = gateway.stats()
    started = time.perf_counter()
    fast = api.pay()
    elapsed = time.perf_counter() - started
    after = gateway.stats()
    assert fast.status_code == 503
    assert fast.json()["error"]["code"] == "circuit_open"
    assert int(fast["Retry-After"]) >= 1
    assert after["requests"] == before["requests"]  # nothing reached the gateway
    assert after["connections_opened"] == before["connections_opened"]
    assert elapsed < 0.5
    assert Payment.objects.get(pk=Payment.objects.order_by("-created").first().pk).status == "pending"
    # After the open period one probe goes through; with the gateway back, it closes.
    gateway.clear()
    time.sleep(settings.BREAKER_OPEN_SECONDS + 0.1)
    assert api.pay().status_code == 201
    assert breaker.snapshot().state == "closed"


def test_declines_do_not_open_the_breaker(gateway) -> None:
    _, key = make_client()
    api = Api(key)
    for _ in range(settings.BREAKER_MINIMUM_CALLS + 2):
        assert api.pay(payment_method="pm_card_chargeCustomerFail").json()["status"] == "failed"
    assert get_gateway().breaker.snapshot().state == "closed"


def test_every_post_carries_the_same_idempotency_key_on_retries(gateway) -> None:
    """The gateway charges, the answer is lost, urllib3 retries: only the same key makes the
    retry a replay instead of a second charge."""
    _, key = make_client()
    gateway.fault("reset_after", count=1, method="POST", path_prefix="/v1/payment_intents")
    response = Api(key).pay()
    assert response.status_code == 201
    payment = Payment.objects.get(pk=response.json()["id"])
    assert [a.outcome for a in payment.attempts.order_by("number")] == ["bad_response", "ok"]
    assert len(gateway.intents_for("payment_id", payment.id)) == 1
    assert gateway.stats()["replayed"] >= 1


def test_rate_limit_retry_after_is_honoured(gateway) -> None:
    _, key = make_client()
    gateway.fault("rate_limit", count=1, retry_after=1, method="POST", path_prefix="/v1/payment_intents")
    response = Api(key).pay()
    attempts = list(Payment.objects.get(pk=response.json()["id"]).attempts.order_by("number"))
    assert [a.outcome for a in attempts] == ["rate_limited", "ok"]
    gap = (attempts[1].started_at - attempts[0].started_at).total_seconds()
    assert gap >= 1.0


def test_pooled_session_reuses_connections(gateway) -> None:
    _, key = make_client()
    api = Api(key)
    gateway.reset(upstream=False)
    for _ in range(20):
        assert api.pay().status_code == 201
    stats = gateway.stats()
    assert stats["requests"] >= 20
    assert stats["connections_opened"] <= 2
    pools = [p for p in get_gateway().adapter.pool_stats()]
    assert pools and pools[0]["max"] == settings.PAYMENT_POOL_MAXSIZE
    assert pools[0]["requests"] >= 20


def test_contract_timeouts_reach_the_client() -> None:
    client = get_gateway()
    assert client.timeout.connect_timeout == settings.PAYMENT_CONNECT_TIMEOUT
    assert client.timeout.read_timeout == settings.PAYMENT_TIMEOUT
    retry = client.adapter.max_retries
    assert retry.total == settings.PAYMENT_RETRY_ATTEMPTS - 1
    assert 409 in retry.status_forcelist and 429 in retry.status_forcelist and 503 in retry.status_forcelist
    assert "POST" in retry.allowed_methods
    assert client.adapter._pool_block is True


def test_a_repeat_after_the_first_request_died_mid_call_resends_the_same_payment(gateway) -> None:
    """The first request opened its payment with the key's claim and died before the gateway
    answered (its lease ran out, the payment stayed processing): the repeat takes the claim
    over, sends that same payment with the same gateway key, and nothing is charged twice."""
    from datetime import timedelta

    from django.utils import timezone

    from payments.models import IdempotencyRecord

    _, key = make_client()
    api = Api(key)
    first = api.pay(idempotency_key="died-mid-call")
    assert first.status_code == 201
    payment = Payment.objects.get()
    long_ago = timezone.now() - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER + 1)
    IdempotencyRecord.objects.filter(resource_id=payment.id).update(response_status=None, response_body=None,
                                                                  locked_until=long_ago)
    Payment.objects.filter(pk=payment.pk).update(status="processing", updated=long_ago, attempt_count=0)
    payment.attempts.all().delete()

    repeat = api.pay(idempotency_key="died-mid-call")
    assert repeat.status_code == 201, repeat.content
    assert repeat.json()["id"] == payment.id and "Idempotent-Replayed" not in repeat
    assert Payment.objects.count() == 1
    assert Payment.objects.get().status == "succeeded"
    assert len(gateway.intents_for("payment_id", payment.id)) == 1
