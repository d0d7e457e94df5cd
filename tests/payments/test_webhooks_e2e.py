"""Gateway events end to end: localstripe signs and delivers them to our server, a real worker
processes them against the real gateway. A 3-D Secure payment waiting for its customer ends
succeeded or failed through the event alone (polling is switched off), and events that arrive
late, twice or out of order never move a payment backwards."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import Client

from payments.models import GatewayEvent, Payment
from payments.services import recording
from payments.webhooks import services
from sandbox.harness import SandboxStack
from tests.logs.scan import find_secrets
from tests.payments.events import SECRET, URL, deliver, make_event
from tests.payments.factories import Api, make_client
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

API_KEY = {"Authorization": "Bearer sk_test_suite"}
WEBHOOK_ID = "payops-tests"
THREE_D_SECURE_CARD = "4000002500003155"


def _register(gateway: SandboxStack, url: str, events: list[str]) -> None:
    response = requests.post(f"{gateway.gateway_url}/_config/webhooks/{WEBHOOK_ID}", timeout=5,
                             data={"url": url, "secret": SECRET, "events[]": events})
    assert response.status_code == 200, response.text


@pytest.fixture
def deliveries(gateway, worker, live_server, settings, monkeypatch) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """localstripe sends payment_intent.succeeded / payment_failed, signed with our secret, to
    the test's server; polling of waiting payments is off, so only an event can move them."""
    settings.PAYMENT_GATEWAY_WEBHOOK_SECRET = SECRET
    monkeypatch.setattr(recording, "_schedule_settle_off_thread", lambda payment_id, delay: None)
    _register(gateway, f"{live_server.url}{URL}", ["payment_intent.succeeded", "payment_intent.payment_failed"])
    yield live_server.url
    # localstripe keeps webhooks across its data resets: nothing more goes to a server that is gone.
    _register(gateway, f"{live_server.url}{URL}", ["sandbox.muted"])


def _tokenize(gateway: SandboxStack, number: str) -> str:
    """A payment method made by the gateway from card details, as a browser SDK would: the card
    number goes to the gateway only, we only ever see its pm_ id."""
    response = requests.post(f"{gateway.gateway_url}/v1/payment_methods", headers=API_KEY, timeout=5, data={
        "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2031",
        "card[cvc]": "123"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _awaiting_customer(gateway: SandboxStack) -> tuple[Api, dict[str, Any]]:
    _, key = make_client()
    api = Api(key)
    response = api.pay(payment_method=_tokenize(gateway, THREE_D_SECURE_CARD), amount=2500)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "requires_action" and body["next_action"]["client_secret"], body
    return api, body


def _authenticate(gateway: SandboxStack, payment: dict[str, Any], *, success: bool) -> None:
    """The customer completes (or fails) 3-D Secure at the gateway."""
    response = requests.post(
        f"{gateway.gateway_url}/v1/payment_intents/{payment['gateway_id']}/_authenticate", headers=API_KEY, timeout=5,
        data={"client_secret": payment["next_action"]["client_secret"], "success": "true" if success else "false"})
    assert response.status_code == 200, response.text


def _settled(api: Api, payment_id: str, timeout: float = 15.0) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        body = api.get(f"/api/v1/payments/{payment_id}").json()
        return body if body["status"] != "requires_action" else None

    return wait_until(final, timeout=timeout, interval=0.2) or api.get(f"/api/v1/payments/{payment_id}").json()


def test_a_customer_who_authenticates_makes_the_payment_succeed_through_the_gateways_event(
        gateway, deliveries, client) -> None:  # type: ignore[no-untyped-def]
    api, payment = _awaiting_customer(gateway)
    _authenticate(gateway, payment, success=True)
    settled = _settled(api, payment["id"])
    assert (settled["status"], settled["next_action"]) == ("succeeded", None)
    event = GatewayEvent.objects.get(object_id=payment["gateway_id"])
    assert (event.type, event.status) == ("payment_intent.succeeded", "processed")
    assert event.action == f"payment {payment['id']}: requires_action -> succeeded"
    assert find_secrets(json.dumps(event.payload)) == []  # the stored event holds no card data
    # The gateway delivers the same event again: answered 200, stored and applied once.
    assert deliver(client, event.payload).status_code == 200
    assert GatewayEvent.objects.filter(object_id=payment["gateway_id"]).count() == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)


def test_a_customer_who_fails_authentication_makes_the_payment_fail_through_the_gateways_event(
        gateway, deliveries) -> None:  # type: ignore[no-untyped-def]
    api, payment = _awaiting_customer(gateway)
    _authenticate(gateway, payment, success=False)
    settled = _settled(api, payment["id"])
    assert (settled["status"], settled["next_action"]) == ("failed", None)
    assert settled["failure_code"] == "payment_intent_authentication_failure"
    event = GatewayEvent.objects.get(object_id=payment["gateway_id"])
    assert (event.type, event.status) == ("payment_intent.payment_failed", "processed")
    assert event.action == f"payment {payment['id']}: requires_action -> failed"


def test_an_event_that_arrives_late_and_out_of_order_never_moves_a_payment_backwards(
        gateway, settings, monkeypatch, client) -> None:  # type: ignore[no-untyped-def]
    """No delivery from localstripe here: the test sends the events itself, in the wrong order."""
    settings.PAYMENT_GATEWAY_WEBHOOK_SECRET = SECRET
    monkeypatch.setattr(recording, "_schedule_settle_off_thread", lambda payment_id, delay: None)
    queued: list[int] = []
    monkeypatch.setattr(services, "_queue", queued.append)
    api, payment = _awaiting_customer(gateway)
    intent_id = payment["gateway_id"]
    waiting = requests.get(f"{gateway.proxy_url}/v1/payment_intents/{intent_id}", headers=API_KEY, timeout=5).json()
    _authenticate(gateway, payment, success=True)  # at the gateway the intent has now succeeded
    # An event from before: the intent as it was when a first authentication had failed.
    stale = make_event("payment_intent.payment_failed", obj={
        **waiting, "status": "requires_payment_method", "next_action": None,
        "last_payment_error": {"code": "payment_intent_authentication_failure"}})
    late_success = make_event("payment_intent.succeeded", obj={**waiting, "status": "succeeded"})

    def process(event: dict[str, Any]) -> GatewayEvent:
        assert deliver(client, event).status_code == 200
        stored = GatewayEvent.objects.get(event_id=event["id"])
        services.gateway_event_process(pk=stored.pk)
        stored.refresh_from_db()
        return stored

    # The stale failure arrives first: processing asks the gateway, which says succeeded.
    first = process(stale)
    assert first.action == f"payment {payment['id']}: requires_action -> succeeded"
    # Then the success, and the stale failure once more: nothing moves.
    assert process(late_success).action == f"payment {payment['id']}: succeeded -> succeeded"
    assert deliver(client, stale).status_code == 200
    assert GatewayEvent.objects.filter(event_id=stale["id"]).count() == 1
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "succeeded"


def test_an_event_that_settles_a_payment_still_in_its_request_keeps_that_requests_tries(
        gateway, settings, monkeypatch, client) -> None:  # type: ignore[no-untyped-def]
    """The gateway charged; its answer is slow on the way back, and its event arrives first and
    settles the payment. The request's own tries stay in the payment's history all the same."""
    from payments.gateway import reset_gateway

    settings.PAYMENT_GATEWAY_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_TIMEOUT, settings.PAYMENT_DEADLINE = 5.0, 10.0  # room for the answer's delay
    monkeypatch.setattr(services, "_queue", lambda pk: None)  # processed below, in this test
    reset_gateway()
    marker = uuid.uuid4().hex
    answers: list[Any] = []

    def pay() -> None:
        try:
            answers.append(Api(key, Client()).pay(metadata={"race": marker}))
        finally:
            connection.close()

    try:
        _, key = make_client()
        gateway.fault("latency", delay_ms=2500, count=1, method="POST", path_prefix="/v1/payment_intents")
        request = threading.Thread(target=pay)
        request.start()
        (intent,) = wait_until(lambda: gateway.intents_for("race", marker), timeout=5, interval=0.05)
        event = make_event("payment_intent.succeeded", obj=intent)
        assert deliver(client, event).status_code == 200
        stored = GatewayEvent.objects.get(event_id=event["id"])
        services.gateway_event_process(pk=stored.pk)
        request.join(15)
    finally:
        gateway.clear()
        reset_gateway()
    payment_id = intent["metadata"]["payment_id"]
    stored.refresh_from_db()
    assert stored.action == f"payment {payment_id}: processing -> succeeded"  # the event came first
    (answer,) = answers
    assert answer.status_code == 201 and answer.json()["status"] == "succeeded"
    payment = Payment.objects.get(pk=payment_id)
    tries = list(payment.attempts.order_by("number").values_list("number", "operation", "outcome"))
    assert [(operation, outcome) for _, operation, outcome in tries] == [("retrieve", "ok"), ("create", "ok")]
    assert [number for number, _, _ in tries] == [1, 2] and payment.attempt_count == 2
