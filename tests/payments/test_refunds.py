"""Refunds against the real sandbox: the payment's refunded amount is what the gateway refunded,
concurrent refunds never over-refund, a failed one frees its amount, an unknown one settles."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection
from django.test import Client

from payments.models import Payment, Refund
from payments.services import refunds
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)

ON_REFUND = {"method": "POST", "path_prefix": "/v1/refunds"}


def _gateway_refunded(gateway, payment_id: str) -> int:
    intent = gateway.intents_for("payment_id", payment_id)[0]
    charge = requests.get(f"{gateway.gateway_url}/v1/charges/{intent['latest_charge']['id']}",
                          auth=("sk_test_suite", ""), timeout=10).json()
    return int(charge["amount_refunded"])


def _refunds_at_once(key: str, payment_id: str, amounts: list[int]) -> list:
    """Each refund from its own client thread, all at the same time."""
    def refund(amount: int):  # type: ignore[no-untyped-def]
        try:
            return Api(key, Client()).refund(payment_id, amount=amount)
        finally:
            connection.close()  # the test client's thread keeps its connection otherwise

    with ThreadPoolExecutor(len(amounts)) as pool:
        return list(pool.map(refund, amounts))


def _paid(key: str, amount: int = 1000) -> dict:
    response = Api(key).pay(amount=amount)
    assert response.status_code == 201 and response.json()["status"] == "succeeded"
    return response.json()


def test_two_concurrent_refunds_one_failing_leave_what_the_gateway_refunded(gateway) -> None:
    _, key = make_client()
    payment = _paid(key)
    gateway.fault("http_400", count=1, **ON_REFUND)
    answers = _refunds_at_once(key, payment["id"], [500, 500])
    assert sorted(r.json()["status"] for r in answers) == ["failed", "succeeded"]
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("partially_refunded", 500)
    assert row.amount_refunded == _gateway_refunded(gateway, payment["id"])
    # The failed refund's amount is free again; nothing beyond the payment can be reserved.
    third = Api(key).refund(payment["id"], amount=500)
    assert (third.status_code, third.json()["status"]) == (201, "succeeded")
    assert Api(key).refund(payment["id"], amount=1).json()["error"]["code"] == "payment_not_refundable"
    row.refresh_from_db()
    assert (row.status, row.amount_refunded) == ("refunded", 1000) == ("refunded", _gateway_refunded(gateway, row.pk))


def test_concurrent_refunds_never_reserve_more_than_the_payment(gateway) -> None:
    _, key = make_client()
    payment = _paid(key)
    answers = _refunds_at_once(key, payment["id"], [400] * 4)
    assert sorted(r.status_code for r in answers) == [201, 201, 400, 400]
    row = Payment.objects.get(pk=payment["id"])
    assert row.amount_refunded == 800 == _gateway_refunded(gateway, row.pk)


def test_an_unknown_refund_settles_with_its_key(gateway) -> None:
    from django.conf import settings

    _, key = make_client()
    payment = _paid(key)
    gateway.fault("reset_after", count=settings.PAYMENT_RETRY_ATTEMPTS, **ON_REFUND)
    response = Api(key).refund(payment["id"], amount=300)
    assert (response.status_code, response.json()["status"]) == (202, "unknown")
    refund = refunds.refund_settle(refund_id=response.json()["id"])
    assert refund.status == "succeeded"
    row = Payment.objects.get(pk=payment["id"])
    assert (row.status, row.amount_refunded) == ("partially_refunded", 300) == (
        "partially_refunded", _gateway_refunded(gateway, row.pk))


def test_a_refund_is_read_by_id_and_listed_on_its_payment(gateway) -> None:
    _, key = make_client()
    _, other_key = make_client()
    payment = _paid(key)
    created = Api(key).refund(payment["id"], amount=250).json()
    got = Api(key).get(f"/api/v1/refunds/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    assert Api(other_key).get(f"/api/v1/refunds/{created['id']}").status_code == 404
    assert Api(key).get("/api/v1/refunds/ref_nope").json()["error"]["code"] == "resource_missing"
    detail = Api(key).get(f"/api/v1/payments/{payment['id']}").json()
    assert [r["id"] for r in detail["refunds"]] == [created["id"]]
    listed = Api(key).get(f"/api/v1/payments/{payment['id']}/refunds").json()
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    assert Refund.objects.get(pk=created["id"]).gateway_id == created["gateway_id"]


def test_a_failed_payment_cannot_be_refunded(gateway) -> None:
    _, key = make_client()
    declined = Api(key).pay(payment_method="pm_card_chargeCustomerFail").json()
    response = Api(key).refund(declined["id"], idempotency_key=uuid.uuid4().hex)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payment_not_refundable"
