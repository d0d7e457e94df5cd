"""Every payment ends in the gateway's truth: the answer table's rows against the real sandbox
(localstripe behind the idempotency/fault proxy), settlement by asking, canonical re-sends and
pool exhaustion."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.conf import settings

from payments.gateway import build_breaker, get_gateway, reset_gateway
from payments.gateway.client import GatewayClient, GatewayConfig
from payments.models import Payment
from payments.services.settlement import payment_settle
from tests.payments.factories import Api, make_client
from tests.payments.test_faults import ON_CREATE, N, _burst, _check_ledger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("kind", ["unauthorized", "forbidden"])
def test_refused_credentials_charge_nothing_answer_503_and_page_ops(gateway, kind: str) -> None:
    from health.checks.gateway import GatewayCheck

    _, key = make_client()
    gateway.fault(kind, count=None, **ON_CREATE)
    gateway.fault(kind, count=None, method="GET", path_prefix="/v1/balance")
    idem_keys = [uuid.uuid4().hex for _ in range(N)]
    responses = _burst(key, idem_keys)
    assert {r.status_code for r in responses} == {503}
    assert all(r["Retry-After"].isdigit() for r in responses)
    assert {r.json()["error"]["code"] for r in responses} <= {"gateway_auth_refused", "circuit_open"}
    assert "gateway_auth_refused" in {r.json()["error"]["code"] for r in responses}
    assert Payment.objects.filter(status="pending").count() == len(idem_keys)
    assert gateway.stats()["forwarded"] == 0
    # The breaker counted the refusals: a wrong key stops every payment, it is an outage.
    assert get_gateway().breaker.snapshot().failures >= 1
    reading = GatewayCheck().measure()
    assert ("credentials_refused", "critical") in {(p.condition, p.severity) for p in reading.problems}

    gateway.clear()
    get_gateway().breaker.reset()  # the operator fixed the key and closed the breaker
    final = [Api(key).pay(idempotency_key=k, amount=500) for k in idem_keys]
    assert [r.status_code for r in final] == [201] * len(idem_keys), final[0].content
    _check_ledger(gateway, final)


def test_a_request_the_gateway_refuses_as_malformed_fails_and_is_logged_as_our_defect(gateway, caplog) -> None:
    _, key = make_client()
    gateway.fault("http_400", count=N, **ON_CREATE)
    responses = _burst(key, [uuid.uuid4().hex for _ in range(N)])
    assert {r.status_code for r in responses} == {201}
    assert {(r.json()["status"], r.json()["failure_code"]) for r in responses} == {("failed", "parameter_invalid_empty")}
    _check_ledger(gateway, responses)
    assert gateway.stats()["forwarded"] == 0
    assert any(r.levelname == "ERROR" and getattr(r, "category", "") == "gateway_rejected_request"
               for r in caplog.records)


def test_a_payment_method_the_gateway_does_not_hold_fails_the_payment_naming_it_and_charges_nothing(
        gateway, caplog) -> None:
    _, key = make_client()
    api = Api(key)
    response = api.pay(payment_method="pm_card_does_not_exist", idempotency_key="unknown-method")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["failure_code"], body["gateway_id"]) == ("failed", "payment_method_invalid", None)
    assert body["failure_message"] == "No such PaymentMethod: 'pm_card_does_not_exist'"
    # One try (Stripe-Should-Retry: false), and at the gateway nothing at all.
    assert body["attempts"] == 1 and gateway.intents_for("payment_id", body["id"]) == []
    # The client's input, not our defect: a warning, never an error in the logs.
    refused = [r for r in caplog.records if getattr(r, "category", "") == "payment_method_refused"]
    assert refused and all(r.levelname == "WARNING" for r in refused)
    # The same key again: the same answer, replayed, nothing sent.
    forwarded = gateway.stats()["forwarded"]
    again = api.pay(payment_method="pm_card_does_not_exist", idempotency_key="unknown-method")
    assert (again.status_code, again.json()) == (201, response.json())
    assert gateway.stats()["forwarded"] == forwarded


def test_a_decline_is_a_card_error_with_its_code_and_intent(gateway) -> None:
    _, key = make_client()
    response = Api(key).pay(payment_method="pm_card_chargeCustomerFail")
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["failure_code"]) == ("failed", "generic_decline")
    intents = gateway.intents_for("payment_id", body["id"])
    assert body["gateway_id"] == intents[0]["id"]
    # Stripe-Should-Retry: false on the decline: one try, not three.
    assert body["attempts"] == 1


def test_slow_gateway_409_while_the_first_try_runs_is_never_a_failure(gateway) -> None:
    """The first try times out while the gateway still works on it; the retries with the same
    key get 409 (in progress). The payment is unknown, never failed, and settles succeeded."""
    _, key = make_client()
    gateway.fault("slow", count=1, delay_ms=int(settings.PAYMENT_TIMEOUT * 1000 * 2.5), **ON_CREATE)
    response = Api(key).pay()
    assert response.status_code == 202
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.status == "unknown"
    outcomes = list(payment.attempts.values_list("outcome", flat=True))
    assert outcomes[0] == "timeout" and "conflict" in outcomes
    deadline = time.monotonic() + 15
    while payment.status == "unknown" and time.monotonic() < deadline:
        time.sleep(0.5)
        payment = payment_settle(payment_id=payment.id)
    assert payment.status == "succeeded"
    assert [i["id"] for i in gateway.intents_for("payment_id", payment.id)] == [payment.gateway_id]


def test_409s_are_waited_out_within_the_deadline_and_the_first_try_answers(gateway) -> None:
    """The gateway finishes the first try before our deadline: the retries that got 409 cost
    no try of the budget, and the replay of the first try's answer is the payment's answer."""
    _, key = make_client()
    gateway.fault("slow", count=1, delay_ms=int(settings.PAYMENT_TIMEOUT * 1000 * 1.6), **ON_CREATE)
    response = Api(key).pay()
    assert response.status_code == 201, response.content
    payment = Payment.objects.get(pk=response.json()["id"])
    outcomes = list(payment.attempts.values_list("outcome", flat=True))
    assert outcomes[0] == "timeout" and outcomes[-1] == "ok"
    assert "conflict" in outcomes and len(outcomes) > settings.PAYMENT_RETRY_ATTEMPTS  # 409s cost no try
    assert [i["id"] for i in gateway.intents_for("payment_id", payment.id)] == [payment.gateway_id]


def test_a_resend_is_byte_identical_whatever_order_the_metadata_came_in(gateway) -> None:
    """A re-send rebuilds metadata from jsonb (keys sorted); the first send had the client's
    order. The proxy fingerprints the body's bytes, as a strict gateway does."""
    _, key = make_client()
    gateway.fault("reset_after", count=settings.PAYMENT_RETRY_ATTEMPTS, **ON_CREATE)
    response = Api(key).pay(metadata={"zeta": "1", "alpha": "2", "mid": "3"})
    assert response.status_code == 202
    payment = payment_settle(payment_id=response.json()["id"])
    assert (payment.status, payment.failure_code) == ("succeeded", "")
    assert gateway.stats()["replayed"] >= 1
    assert len(gateway.intents_for("payment_id", payment.id)) == 1


def test_same_key_other_parameters_is_unknown_not_failed(gateway) -> None:
    _, key = make_client()
    idem = uuid.uuid4().hex
    gateway.fault("unauthorized", count=1, **ON_CREATE)
    assert Api(key).pay(idempotency_key=idem, amount=700).status_code == 503  # nothing reached the gateway
    payment = Payment.objects.get()
    # Our payment's gateway key was used with another body first (a bug of ours): the gateway
    # may have charged under it, so the re-send's 400 idempotency_error is no decline.
    first = get_gateway().create_payment_intent(idempotency_key=payment.gateway_idempotency_key, amount=999,
                                                currency="usd", payment_method="pm_card_visa", metadata={})
    assert first.ok
    response = Api(key).pay(idempotency_key=idem, amount=700)
    assert response.status_code == 202
    assert (response.json()["status"], response.json()["failure_code"]) == ("unknown", "idempotency_mismatch")


def test_settlement_asks_the_gateway_for_an_intent_it_knows(gateway) -> None:
    _, key = make_client()
    body = Api(key).pay().json()
    # As if the answer's write had been lost after the gateway charged: unknown, with its id.
    Payment.objects.filter(pk=body["id"]).update(status="unknown")
    before = gateway.stats()
    payment = payment_settle(payment_id=body["id"])
    after = gateway.stats()
    assert payment.status == "succeeded"
    assert after["requests"] - before["requests"] == 1  # one GET, no re-send
    assert list(payment.attempts.values_list("operation", flat=True)) == ["create", "retrieve"]


def test_a_full_gateway_pool_is_a_recorded_503_never_a_500(gateway) -> None:
    gateway.fault("latency", count=1, delay_ms=800, **ON_CREATE)
    client = GatewayClient(GatewayConfig(base_url=gateway.proxy_url, api_key="sk_test_pool", pool_maxsize=1,
                                         pool_wait=0.2, read_timeout=5, deadline=8), breaker=build_breaker())
    held = threading.Thread(target=client.create_payment_intent, kwargs=dict(
        idempotency_key=uuid.uuid4().hex, amount=100, currency="usd", payment_method="pm_card_visa", metadata={}))
    held.start()
    time.sleep(0.2)
    result = client.create_payment_intent(idempotency_key=uuid.uuid4().hex, amount=100, currency="usd",
                                          payment_method="pm_card_visa", metadata={})
    held.join()
    assert (result.outcome, result.sent) == ("pool_timeout", False)
    assert [a.outcome for a in result.attempts] == ["pool_timeout"]

    # Through the API: the process's gateway with the same one-connection pool.
    import payments.gateway as gateway_module

    reset_gateway()
    gateway_module._client = client
    try:
        _, key = make_client()
        gateway.fault("latency", count=1, delay_ms=800, **ON_CREATE)
        first = threading.Thread(target=lambda: Api(key).pay())
        first.start()
        time.sleep(0.2)
        response = Api(key).pay()
        first.join()
    finally:
        reset_gateway()
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "gateway_pool_full"
    payment = Payment.objects.get(status="pending")
    assert list(payment.attempts.values_list("outcome", flat=True)) == ["pool_timeout"]
