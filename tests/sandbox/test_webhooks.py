"""The sandbox gateway sends Stripe's events for 3-D Secure outcomes, signed as Stripe signs
them: payment_intent.succeeded (localstripe's own) and payment_intent.payment_failed when the
customer fails authentication (localstripe alone sends nothing then)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import requests

from sandbox.harness import SandboxStack
from tests.sandbox.fixtures import clean, session, stack  # noqa: F401  (pytest fixtures)
from tests.support.httpserver import Receiver

SECRET = "whsec_sandbox_tests_0123456789"


def _intent_awaiting_customer(stack: SandboxStack, session: requests.Session) -> dict:
    method = session.post(f"{stack.gateway_url}/v1/payment_methods", data={
        "type": "card", "card[number]": "4000002500003155", "card[exp_month]": "12", "card[exp_year]": "2031",
        "card[cvc]": "123"}).json()
    intent = session.post(f"{stack.gateway_url}/v1/payment_intents", data={
        "amount": 700, "currency": "eur", "payment_method": method["id"], "confirm": "true"}).json()
    assert intent["status"] == "requires_action", intent
    return intent


def _events(receiver: Receiver, count: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return receiver.requests


def test_3ds_outcomes_are_sent_as_signed_events(stack: SandboxStack, session: requests.Session) -> None:  # noqa: F811
    with Receiver() as receiver:
        registered = requests.post(f"{stack.gateway_url}/_config/webhooks/sandbox-tests", timeout=5, data={
            "url": f"{receiver.url}/hook", "secret": SECRET,
            "events[]": ["payment_intent.succeeded", "payment_intent.payment_failed"]})
        assert registered.status_code == 200
        try:
            failed, succeeded = _intent_awaiting_customer(stack, session), _intent_awaiting_customer(stack, session)
            for intent, success in ((failed, "false"), (succeeded, "true")):
                answer = session.post(f"{stack.gateway_url}/v1/payment_intents/{intent['id']}/_authenticate",
                                      data={"client_secret": intent["client_secret"], "success": success})
                assert answer.status_code == 200, answer.text
            received = _events(receiver, 2)
        finally:
            requests.post(f"{stack.gateway_url}/_config/webhooks/sandbox-tests", timeout=5, data={
                "url": f"{receiver.url}/hook", "secret": SECRET, "events[]": ["sandbox.muted"]})
    by_intent = {r["json"]["data"]["object"]["id"]: r for r in received}
    assert by_intent[failed["id"]]["json"]["type"] == "payment_intent.payment_failed"
    failed_intent = by_intent[failed["id"]]["json"]["data"]["object"]
    assert failed_intent["status"] == "requires_payment_method"
    assert failed_intent["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    assert by_intent[succeeded["id"]]["json"]["type"] == "payment_intent.succeeded"
    for request in received:
        fields = dict(item.split("=", 1) for item in request["headers"]["Stripe-Signature"].split(","))
        # The receiver keeps the parsed body; localstripe signs json.dumps(indent=2, sort_keys=True) of it.
        body = json.dumps(request["json"], indent=2, sort_keys=True).encode()
        expected = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
        assert abs(time.time() - int(fields["t"])) < 60
