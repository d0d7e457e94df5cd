"""An operator settles a payment by hand and refunds one from the console; amounts read in
their currency's own decimals."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from payments.models import Payment, Refund
from payments.money import money_format
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


def _lost_answer_payment(key: str) -> Payment:
    """A payment the gateway charged whose outcome we lost: unknown, and with its intent's id."""
    body = Api(key).pay(amount=1250).json()
    Payment.objects.filter(pk=body["id"]).update(status="unknown", failure_code="timeout")
    return Payment.objects.get(pk=body["id"])


def test_an_operator_settles_a_payment_by_hand_after_a_fresh_read(client, make_user, gateway) -> None:
    operator = make_user("ops_operator")
    client.force_login(operator)
    _, key = make_client()
    payment = _lost_answer_payment(key)
    url = reverse("admin:payments_payment_settle", args=[payment.pk])
    page = client.get(reverse("admin:payments_payment_change", args=[payment.pk]))
    assert url in page.content.decode()

    preview = client.post(url, {"gateway_id": payment.gateway_id, "note": "ticket OPS-12", "look": "1"})
    assert preview.status_code == 200
    assert "Would become" in preview.content.decode() and "succeeded" in preview.content.decode()
    payment.refresh_from_db()
    assert payment.status == "unknown"  # reading changes nothing

    done = client.post(url, {"gateway_id": payment.gateway_id, "note": "ticket OPS-12", "apply": "1"})
    assert done.status_code == 302
    payment.refresh_from_db()
    assert (payment.status, payment.failure_code) == ("succeeded", "")
    entry = LogEntry.objects.get(object_id=payment.pk, user=operator)
    assert "ticket OPS-12" in entry.change_message and "unknown -> succeeded" in entry.change_message


def test_an_intent_of_another_payment_is_refused(client, make_user, gateway) -> None:
    client.force_login(make_user("ops_operator"))
    _, key = make_client()
    payment = _lost_answer_payment(key)
    other = Api(key).pay().json()
    Payment.objects.filter(pk=payment.pk).update(gateway_id=None)
    response = client.post(reverse("admin:payments_payment_settle", args=[payment.pk]),
                           {"gateway_id": other["gateway_id"], "note": "guess", "apply": "1"})
    assert response.status_code == 200
    assert f"belongs to payment {other['id']}" in response.content.decode()
    payment.refresh_from_db()
    assert payment.status == "unknown"


def test_an_operator_refunds_from_the_console_through_the_same_service(client, make_user, gateway) -> None:
    operator = make_user("ops_operator")
    client.force_login(operator)
    _, key = make_client()
    paid = Api(key).pay(amount=1250).json()
    url = reverse("admin:payments_payment_refund", args=[paid["id"]])
    too_much = client.post(url, {"amount": 5000, "reason": "customer asked"})
    assert too_much.status_code == 200 and "Only 1250 is left to refund." in too_much.content.decode()

    assert client.post(url, {"amount": 300, "reason": "damaged parcel"}).status_code == 302
    refund = Refund.objects.get(payment_id=paid["id"])
    assert (refund.status, refund.amount, refund.reason, refund.created_by) == (
        "succeeded", 300, "damaged parcel", operator)
    payment = Payment.objects.get(pk=paid["id"])
    assert (payment.status, payment.amount_refunded) == ("partially_refunded", 300)
    assert "damaged parcel" in LogEntry.objects.get(object_id=paid["id"], user=operator).change_message
    # The API client sees the console's refund on its payment.
    assert [r["id"] for r in Api(key).get(f"/api/v1/payments/{paid['id']}").json()["refunds"]] == [refund.id]


def test_a_viewer_can_neither_settle_nor_refund(client, make_user, gateway) -> None:
    client.force_login(make_user("ops_viewer"))
    _, key = make_client()
    payment = _lost_answer_payment(key)
    for name in ("admin:payments_payment_settle", "admin:payments_payment_refund"):
        assert client.get(reverse(name, args=[payment.pk])).status_code == 403
    assert client.post(reverse("admin:payments_payment_settle", args=[payment.pk]),
                       {"gateway_id": payment.gateway_id, "note": "x", "apply": "1"}).status_code == 403
    payment.refresh_from_db()
    assert payment.status == "unknown"


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (1250, "eur", "12.50 EUR"), (1250, "jpy", "1,250 JPY"), (1250, "krw", "1,250 KRW"),
    (1250, "kwd", "1.250 KWD"), (1250, "bhd", "1.250 BHD"), (123456789, "usd", "1,234,567.89 USD"),
])
def test_money_reads_in_its_currency_decimals(amount: int, currency: str, shown: str) -> None:
    assert money_format(amount=amount, currency=currency) == shown


def test_the_console_lists_yen_without_dividing_by_a_hundred(client, make_user, gateway) -> None:
    client.force_login(make_user("ops_viewer"))
    _, key = make_client()
    Api(key).pay(amount=1250, currency="jpy")
    page = client.get(reverse("admin:payments_payment_changelist")).content.decode()
    assert "1,250 JPY" in page and "12.50" not in page


def test_the_inbox_lists_unknown_payments_and_refunds_by_currency(client, make_user, gateway) -> None:
    client.force_login(make_user("ops_viewer"))
    _, key = make_client()
    _lost_answer_payment(key)
    paid = Api(key).pay(amount=900, currency="jpy").json()
    refund = Api(key).refund(paid["id"], amount=400).json()
    Refund.objects.filter(pk=refund["id"]).update(status="unknown")
    page = client.get(reverse("admin:payments_payment_changelist")).content.decode()
    assert "Outcome unknown" in page and "12.50 USD" in page
    assert "Refunds with an unknown outcome" in page and "400 JPY" in page
