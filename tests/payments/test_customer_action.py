"""3-D Secure: a payment whose customer must authenticate answers 201 requires_action with what
to do next, and is followed to its end by asking the gateway (its events are in
test_webhooks.py): completed, failed at authentication, or abandoned and canceled."""

from __future__ import annotations

import time

import pytest
import requests

from payments.models import Payment
from payments.services.settlement import payment_settle
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)

THREE_D_SECURE_CARD = "4000002500003155"


def tokenize(gateway, number: str = THREE_D_SECURE_CARD) -> str:
    """What the customer's browser does with the gateway's SDK: card data never reaches us."""
    response = requests.post(f"{gateway.proxy_url}/v1/payment_methods", auth=("sk_test_browser", ""), data={
        "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2030",
        "card[cvc]": "123"}, timeout=10)
    response.raise_for_status()
    return response.json()["id"]


def authenticate(gateway, payment: dict, *, success: bool) -> None:
    """The customer completes (or fails) the challenge at the gateway."""
    intent = payment["gateway_id"]
    response = requests.post(f"{gateway.gateway_url}/v1/payment_intents/{intent}/_authenticate",
                             auth=("sk_test_browser", ""), timeout=10,
                             data={"client_secret": payment["next_action"]["client_secret"],
                                   "success": "true" if success else "false"})
    response.raise_for_status()


def _requires_action(gateway, key: str) -> dict:
    response = Api(key).pay(payment_method=tokenize(gateway))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "requires_action"
    assert body["next_action"]["type"] == "use_stripe_sdk"
    assert body["next_action"]["client_secret"].startswith(body["gateway_id"] + "_secret_")
    return body


def test_authenticated_payment_succeeds_by_polling(gateway) -> None:
    _, key = make_client()
    body = _requires_action(gateway, key)
    # Asking before the customer acted changes nothing.
    assert payment_settle(payment_id=body["id"]).status == "requires_action"
    authenticate(gateway, body, success=True)
    payment = payment_settle(payment_id=body["id"])
    assert payment.status == "succeeded"
    detail = Api(key).get(f"/api/v1/payments/{body['id']}").json()
    assert (detail["status"], detail["next_action"]) == ("succeeded", None)


def test_failed_authentication_fails_the_payment(gateway) -> None:
    _, key = make_client()
    body = _requires_action(gateway, key)
    authenticate(gateway, body, success=False)
    payment = payment_settle(payment_id=body["id"])
    assert (payment.status, payment.failure_code) == ("failed", "payment_intent_authentication_failure")


def test_abandoned_authentication_is_canceled_at_the_gateway(gateway, settings) -> None:
    _, key = make_client()
    body = _requires_action(gateway, key)
    settings.PAYMENT_ACTION_EXPIRY = 0  # the customer never came back
    payment = payment_settle(payment_id=body["id"])
    assert payment.status == "canceled"
    intents = gateway.intents_for("payment_id", body["id"])
    assert [i["status"] for i in intents] == ["canceled"]
    # A customer who authenticates after all cannot complete a canceled intent.
    with pytest.raises(requests.HTTPError):
        authenticate(gateway, body, success=True)
    assert payment_settle(payment_id=body["id"]).status == "canceled"


def test_the_worker_follows_a_waiting_payment_to_its_end(gateway, worker) -> None:
    _, key = make_client()
    body = _requires_action(gateway, key)
    authenticate(gateway, body, success=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        payment = Payment.objects.get(pk=body["id"])
        if payment.status != "requires_action":
            break
        time.sleep(0.5)
    assert payment.status == "succeeded"
    assert payment.next_action is None
