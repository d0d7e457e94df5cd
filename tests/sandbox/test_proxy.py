"""The proxy against a real localstripe, through real sockets, seen by `requests`.

Every fault must surface as the exception a production client would really get, so these
tests assert on requests' exception types and on what reached the gateway.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from urllib3.exceptions import NewConnectionError, ProtocolError

from sandbox.harness import SandboxStack
from tests.sandbox.fixtures import clean, make_session, session, stack  # noqa: F401  (pytest fixtures)

PI = "/v1/payment_intents"
TIMEOUT = (2.0, 5.0)


def intent_form(order: str, *, amount: int = 1000, payment_method: str = "pm_card_visa") -> dict[str, str]:
    return {
        "amount": str(amount),
        "currency": "eur",
        "payment_method": payment_method,
        "confirm": "true",
        "metadata[order]": order,
    }


def create(
    stack: SandboxStack, session: requests.Session, order: str, key: str | None = None, **kw: Any
) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    timeout = kw.pop("timeout", TIMEOUT)
    return session.post(stack.proxy_url + PI, data=intent_form(order, **kw), headers=headers, timeout=timeout)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cause_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        nxt = current.__cause__ or current.__context__
        if nxt is None and current.args and isinstance(current.args[-1], BaseException):
            nxt = current.args[-1]  # urllib3 wraps the OS error in args, not as a cause
        if nxt is None and hasattr(current, "reason") and isinstance(current.reason, BaseException):
            nxt = current.reason
        current = nxt
    return seen


# ---- idempotency ---------------------------------------------------------------------


def test_replay_returns_saved_answer_without_reaching_gateway(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("replay"), unique("key")
    first = create(stack, session, order, key)
    second = create(stack, session, order, key)

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == "succeeded"
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    stats = stack.stats()
    assert (stats["requests"], stats["forwarded"], stats["replayed"]) == (2, 1, 1)
    assert len(stack.intents_for("order", order)) == 1


def test_same_key_other_params_is_400(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("mismatch"), unique("key")
    assert create(stack, session, order, key).status_code == 200
    other = create(stack, session, order, key, amount=2000)
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    assert "same parameters" in other.json()["error"]["message"]
    assert stack.stats()["forwarded"] == 1


def test_key_is_scoped_by_authorization(stack: SandboxStack, make_session: Callable[[], requests.Session]) -> None:
    order, key = unique("scope"), unique("key")
    alice, bob = make_session(), make_session()
    bob.auth = ("sk_test_other_account", "")
    assert create(stack, alice, order, key).status_code == 200
    assert "Idempotent-Replayed" not in create(stack, bob, order, key).headers
    assert len(stack.intents_for("order", order)) == 2


def test_concurrent_request_with_key_in_flight_is_409(
    stack: SandboxStack, make_session: Callable[[], requests.Session]
) -> None:
    order, key = unique("inflight"), unique("key")
    stack.fault("slow", count=1, delay_ms=800)
    results: dict[str, requests.Response] = {}
    first = threading.Thread(target=lambda: results.update(first=create(stack, make_session(), order, key)))
    first.start()
    time.sleep(0.2)
    second = create(stack, make_session(), order, key)
    first.join()

    assert second.status_code == 409
    error = second.json()["error"]
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_in_use")
    assert results["first"].status_code == 200
    third = create(stack, make_session(), order, key)
    assert third.headers["Idempotent-Replayed"] == "true"
    assert len(stack.intents_for("order", order)) == 1


def test_decline_passes_through_and_is_saved(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("decline"), unique("key")
    declined = create(stack, session, order, key, payment_method="pm_card_chargeCustomerFail")
    assert declined.status_code == 402
    assert declined.json()["error"]["code"] == "card_declined"
    again = create(stack, session, order, key, payment_method="pm_card_chargeCustomerFail")
    assert again.status_code == 402 and again.headers["Idempotent-Replayed"] == "true"
    [intent] = stack.intents_for("order", order)
    assert intent["status"] == "requires_payment_method"  # localstripe keeps the intent


def test_a_payment_method_localstripe_does_not_hold_is_answered_as_stripe_does(
        stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("no-such-method"), unique("key")
    refused = create(stack, session, order, key, payment_method="pm_card_nowhere")
    assert refused.status_code == 400 and refused.headers["Stripe-Should-Retry"] == "false"
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "resource_missing",
                                                              "payment_method")
    assert error["message"] == "No such PaymentMethod: 'pm_card_nowhere'"
    again = create(stack, session, order, key, payment_method="pm_card_nowhere")
    assert again.status_code == 400 and again.headers["Idempotent-Replayed"] == "true"
    assert stack.intents_for("order", order) == []  # nothing was created


# ---- faults: errors surfaced exactly as a client sees them ---------------------------


def test_reset_before_is_connection_reset_and_never_charges(stack: SandboxStack, session: requests.Session) -> None:
    order = unique("rst-before")
    stack.fault("reset_before", count=1)
    with pytest.raises(requests.ConnectionError) as info:
        create(stack, session, order, unique("key"))
    assert any(isinstance(e, ConnectionResetError) for e in cause_chain(info.value))
    assert stack.intents_for("order", order) == []
    assert stack.stats()["forwarded"] == 0


@pytest.mark.parametrize("kind", ["reset_after", "lose_answer"])
def test_lost_answer_charges_once_and_retry_replays(stack: SandboxStack, session: requests.Session, kind: str) -> None:
    order, key = unique(kind), unique("key")
    stack.fault(kind, count=1)
    with pytest.raises(requests.ConnectionError) as info:
        create(stack, session, order, key)
    assert any(isinstance(e, (ConnectionResetError, ProtocolError)) for e in cause_chain(info.value))
    [charged] = stack.intents_for("order", order)

    retry = create(stack, session, order, key)
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == charged["id"]
    assert len(stack.intents_for("order", order)) == 1


def test_truncate_is_chunked_encoding_error(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("truncate"), unique("key")
    stack.fault("truncate", count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        create(stack, session, order, key)
    assert len(stack.intents_for("order", order)) == 1
    assert create(stack, session, order, key).headers["Idempotent-Replayed"] == "true"


def test_malformed_is_200_with_invalid_json(stack: SandboxStack, session: requests.Session) -> None:
    order = unique("malformed")
    stack.fault("malformed", count=1)
    resp = create(stack, session, order, unique("key"))
    assert resp.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        resp.json()
    assert len(stack.intents_for("order", order)) == 1


def test_latency_after_forward_times_out_but_charges(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("latency"), unique("key")
    stack.fault("latency", count=1, delay_ms=1500)
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(stack, session, order, key, timeout=(1.0, 0.4))
    [charged] = stack.intents_for("order", order)  # the gateway processed it
    retry = create(stack, session, order, key)  # key saved before the delay: replay
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == charged["id"]


def test_latency_before_times_out_and_charges_later(stack: SandboxStack, session: requests.Session) -> None:
    order = unique("latency-before")
    stack.fault("latency_before", count=1, delay_ms=1000)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(stack, session, order, unique("key"), timeout=(1.0, 0.2))
    assert stack.intents_for("order", order) == []  # still "in the network"
    time.sleep(max(0.0, 1.4 - (time.monotonic() - started)))
    assert len(stack.intents_for("order", order)) == 1  # arrived after the client gave up


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("http_500", 500, "api_error"),
        ("http_502", 502, "api_error"),
        ("http_503", 503, "api_error"),
        ("rate_limit", 429, "rate_limit_error"),
    ],
)
def test_injected_errors_are_not_forwarded_nor_saved(
    stack: SandboxStack, session: requests.Session, kind: str, status: int, error_type: str
) -> None:
    order, key = unique(kind), unique("key")
    stack.fault(kind, count=1, retry_after=7)
    resp = create(stack, session, order, key)
    assert resp.status_code == status
    assert resp.json()["error"]["type"] == error_type
    if kind in ("rate_limit", "http_503"):
        assert resp.headers["Retry-After"] == "7"
    assert stack.intents_for("order", order) == []
    retry = create(stack, session, order, key)  # nothing was saved: this one goes through
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
    assert stack.stats()["faults_applied"] == {kind: 1}


def test_refuse_closes_the_port_then_reopens(stack: SandboxStack, session: requests.Session) -> None:
    order = unique("refuse")
    assert create(stack, session, order).status_code == 200  # the pool now holds a connection
    stack.fault("refuse", duration_ms=800)
    with pytest.raises(requests.ConnectionError) as info:
        create(stack, session, order)
    chain = cause_chain(info.value)
    assert any(isinstance(e, NewConnectionError) for e in chain), chain
    assert any(isinstance(e, ConnectionRefusedError) for e in chain)
    # The harness retries refused control calls, so this returns once the port reopened.
    stats = stack.stats()
    assert stats["refusing_for_ms"] == 0 and stats["faults_applied"]["refuse"] == 1
    assert create(stack, session, order).status_code == 200


def test_refuse_rejects_count(stack: SandboxStack) -> None:
    with pytest.raises(Exception, match="time-based"):
        stack.fault("refuse", count=3)


# ---- rule mechanics ------------------------------------------------------------------


def test_fault_count_decrements_then_rule_disappears(stack: SandboxStack, session: requests.Session) -> None:
    stack.fault("http_503", count=2)
    assert [rule["count"] for rule in stack.faults()] == [2]
    assert create(stack, session, unique("count")).status_code == 503
    assert [rule["count"] for rule in stack.faults()] == [1]
    assert create(stack, session, unique("count")).status_code == 503
    assert stack.faults() == []
    assert create(stack, session, unique("count")).status_code == 200
    assert stack.stats()["faults_applied"] == {"http_503": 2}


def test_filters_and_first_matching_rule(stack: SandboxStack, session: requests.Session) -> None:
    stack.fault("http_500", method="GET")  # does not match POSTs
    stack.fault("http_502", path_prefix="/v1/refunds")  # does not match intents
    stack.fault("http_503", probability=0.0)  # never fires
    stack.fault("rate_limit", path_prefix=PI)  # the first rule that applies
    assert create(stack, session, unique("filters")).status_code == 429
    assert session.get(stack.proxy_url + "/v1/balance", timeout=TIMEOUT).status_code == 500
    stack.clear()
    assert stack.faults() == []
    assert create(stack, session, unique("filters")).status_code == 200


def test_bad_rules_are_rejected(stack: SandboxStack) -> None:
    for rule in ({"kind": "explode"}, {"kind": "latency", "dealy_ms": 5}, {"kind": "http_500", "count": 0}):
        kind = rule.pop("kind")
        with pytest.raises(Exception, match="400"):
            stack.fault(kind, **rule)


# ---- fast mode -----------------------------------------------------------------------


def test_fast_mode_answers_locally(stack: SandboxStack, session: requests.Session) -> None:
    stack.set_fast(True)
    order = unique("fast")
    ids = set()
    for i in range(3):
        resp = create(stack, session, order, amount=100 + i)
        assert resp.status_code == 200
        intent = resp.json()
        assert intent["id"].startswith("pi_") and intent["status"] == "succeeded"
        assert (intent["amount"], intent["currency"], intent["metadata"]) == (100 + i, "eur", {"order": order})
        ids.add(intent["id"])
    assert len(ids) == 3
    fetched = session.get(f"{stack.proxy_url}{PI}/{intent['id']}", timeout=TIMEOUT)
    assert fetched.json() == intent
    assert session.get(f"{stack.proxy_url}{PI}/pi_missing", timeout=TIMEOUT).status_code == 404
    assert session.get(stack.proxy_url + "/v1/balance", timeout=TIMEOUT).json()["object"] == "balance"
    stats = stack.stats()
    assert (stats["forwarded"], stats["answered_locally"]) == (0, 6)
    assert {pi["id"] for pi in stack.intents_for("order", order)} == ids


def test_fast_mode_keeps_idempotency_declines_and_auth(stack: SandboxStack, session: requests.Session) -> None:
    stack.set_fast(True)
    order, key = unique("fast-idem"), unique("key")
    first = create(stack, session, order, key)
    again = create(stack, session, order, key)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert create(stack, session, order, key, amount=1).status_code == 400
    declined = create(stack, session, order, payment_method="pm_card_chargeCustomerFail")
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined"
    anonymous = requests.post(stack.proxy_url + PI, data=intent_form(order), timeout=TIMEOUT)
    assert anonymous.status_code == 401


# ---- connections and stats -----------------------------------------------------------


def test_pooled_session_uses_one_connection(stack: SandboxStack, session: requests.Session) -> None:
    for _ in range(10):
        assert session.get(stack.proxy_url + "/v1/balance", timeout=TIMEOUT).status_code == 200
    stats = stack.stats()
    assert (stats["connections_opened"], stats["requests"], stats["forwarded"]) == (1, 10, 10)
    assert stats["connections_open"] == 1 and stats["in_flight"] == 0


def test_separate_sessions_open_separate_connections(
    stack: SandboxStack, make_session: Callable[[], requests.Session]
) -> None:
    for _ in range(10):
        with make_session() as s:
            assert s.get(stack.proxy_url + "/v1/balance", timeout=TIMEOUT).status_code == 200
    stats = stack.stats()
    assert (stats["connections_opened"], stats["requests"]) == (10, 10)


def test_reset_empties_everything(stack: SandboxStack, session: requests.Session) -> None:
    order, key = unique("reset"), unique("key")
    create(stack, session, order, key)
    stack.fault("http_500", path_prefix="/nothing")
    stack.reset(upstream=True)
    assert stack.intents_for("order", order) == []
    assert stack.faults() == []
    stats = stack.stats()
    assert (stats["requests"], stats["forwarded"], stats["idempotency_keys"]) == (0, 0, 0)
    # the key is gone too: the same request is processed afresh
    assert "Idempotent-Replayed" not in create(stack, session, order, key).headers
