"""Every fault kind of the sandbox proxy, 20 payments each, against the real localstripe.

What must hold whatever the fault: at most one charge at the gateway per payment, every 2xx
answer exists both here and at the gateway, no 500, and once settled (by the real worker)
no payment is left unknown or processing.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from payments.gateway import reset_gateway
from payments.models import Payment
from tests.payments.factories import Api, make_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

N = 20
ON_CREATE = {"method": "POST", "path_prefix": "/v1/payment_intents"}


def _burst(key: str, idem_keys: list[str]) -> list:
    def one(idem: str):  # type: ignore[no-untyped-def]
        try:
            return Api(key, Client()).pay(idempotency_key=idem, amount=500)
        finally:
            # The test client keeps a thread's connection open (it disconnects Django's
            # end-of-request close); give it back to the pool as a real request would.
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, idem_keys))


def _wait_settled(timeout: float = 40.0) -> list[Payment]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unsettled = list(Payment.objects.filter(status__in=["unknown", "processing"]))
        if not unsettled:
            return []
        time.sleep(0.5)
    return unsettled


def _check_ledger(gateway, responses: list) -> None:
    assert all(r.status_code != 500 for r in responses)
    for response in responses:
        if response.status_code in (201, 202):
            body = response.json()
            assert Payment.objects.filter(pk=body["id"]).exists()
    for payment in Payment.objects.all():
        intents = gateway.intents_for("payment_id", payment.id)
        assert len(intents) <= 1, f"{payment.id} charged {len(intents)} times"
        if payment.status == "succeeded":
            assert [i["id"] for i in intents] == [payment.gateway_id]
            assert intents[0]["status"] == "succeeded"
        if payment.status == "pending":
            assert intents == []  # never sent: nothing may have been charged


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("latency", {"delay_ms": 1500}),
        # The gateway still works on the first try when the retry comes: 409 in progress.
        ("slow", {"delay_ms": 2500}),
        ("reset_before", {}),
        ("reset_after", {}),
        ("truncate", {}),
        ("malformed", {}),
        ("http_500", {}),
        ("http_502", {}),
        ("http_503", {}),
        ("rate_limit", {"retry_after": 1}),
    ],
)
def test_fault_never_double_charges_or_loses_a_payment(gateway, worker, kind: str, rule: dict) -> None:
    _, key = make_client()
    gateway.fault(kind, count=N, **ON_CREATE, **rule)
    idem_keys = [uuid.uuid4().hex for _ in range(N)]
    responses = _burst(key, idem_keys)
    gateway.clear()
    assert {r.status_code for r in responses} <= {201, 202, 503}, [r.content for r in responses if r.status_code >= 400]
    assert _wait_settled() == []
    _check_ledger(gateway, responses)
    assert Payment.objects.filter(status="succeeded").count() + Payment.objects.filter(status="pending").count() == N
    # A client retrying every answer with its key ends with 201 for all of them.
    final = [Api(key).pay(idempotency_key=k, amount=500) for k in idem_keys]
    assert [r.status_code for r in final] == [201] * N
    assert {r.json()["status"] for r in final} == {"succeeded"}
    _check_ledger(gateway, final)


def test_refused_connections_answer_503_then_succeed_on_retry(gateway) -> None:
    _, key = make_client()
    reset_gateway()  # no pooled connection survives: the next calls must connect anew
    gateway.fault("refuse", duration_ms=2500)
    idem_keys = [uuid.uuid4().hex for _ in range(N)]
    responses = _burst(key, idem_keys)
    assert {r.status_code for r in responses} == {503}
    assert all(r["Retry-After"].isdigit() for r in responses)
    assert Payment.objects.filter(status="pending").count() == N
    assert gateway.stats()["forwarded"] == 0
    time.sleep(2.6)
    results: dict[str, int] = {}
    deadline = time.monotonic() + 20
    while len(results) < N and time.monotonic() < deadline:
        for idem in idem_keys:
            if idem not in results:
                response = Api(key).pay(idempotency_key=idem, amount=500)
                if response.status_code == 201:
                    results[idem] = 201
        time.sleep(0.3)
    assert len(results) == N
    _check_ledger(gateway, [])
    assert Payment.objects.filter(status="succeeded").count() == N


def test_gateway_slower_than_the_deadline_gives_202_and_settles(gateway, worker) -> None:
    """Every try times out: the request still answers within the deadline, with 202/unknown."""
    from django.conf import settings

    _, key = make_client()
    gateway.fault("latency", delay_ms=1500, **ON_CREATE)  # until cleared
    started = time.monotonic()
    response = Api(key).pay()
    elapsed = time.monotonic() - started
    gateway.clear()
    assert response.status_code == 202
    assert response.json()["status"] == "unknown"
    assert elapsed < settings.PAYMENT_DEADLINE + 0.5
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.attempts.count() >= 2
    assert set(payment.attempts.values_list("outcome", flat=True)) == {"timeout"}
    assert _wait_settled() == []
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert len(gateway.intents_for("payment_id", payment.id)) == 1
