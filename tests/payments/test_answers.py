"""The answer table, row by row: what each gateway answer means for the payment, the retry
policy and the breaker. The rows' effects against the real sandbox are in test_gateway_truth.py."""

from __future__ import annotations

import pytest

from payments.gateway import answers
from payments.gateway.answers import Acted, Becomes, Breaker
from payments.gateway.results import GatewayResult
from payments.outcomes import create_outcome, intent_outcome

CARD_ERROR = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}
IDEMPOTENCY_ERROR = {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used..."}


@pytest.mark.parametrize(
    ("status", "error", "method", "outcome", "becomes", "retry", "breaker"),
    [
        (200, None, "POST", "ok", Becomes.INTENT, False, Breaker.SUCCESS),
        (402, CARD_ERROR, "POST", "declined", Becomes.FAILED, False, Breaker.SUCCESS),
        (402, {"type": "invalid_request_error", "code": "card_declined"}, "POST", "declined", Becomes.FAILED, False,
         Breaker.SUCCESS),
        (409, {"type": "idempotency_error", "code": "idempotency_key_in_use"}, "POST", "conflict",
         Becomes.UNSETTLED, True, Breaker.IGNORED),
        (400, IDEMPOTENCY_ERROR, "POST", "idempotency_mismatch", Becomes.UNSETTLED, False, Breaker.SUCCESS),
        (400, {"type": "invalid_request_error", "code": "parameter_missing"}, "POST", "invalid_request",
         Becomes.FAILED, False, Breaker.SUCCESS),
        (404, {"type": "invalid_request_error", "code": "resource_missing"}, "POST", "invalid_request",
         Becomes.FAILED, False, Breaker.SUCCESS),
        # The client's payment method (Stripe names the parameter): its input, not our defect.
        (400, {"type": "invalid_request_error", "code": "resource_missing", "param": "payment_method"}, "POST",
         "payment_method_invalid", Becomes.FAILED, False, Breaker.SUCCESS),
        (404, {"type": "invalid_request_error", "code": "resource_missing"}, "GET", "not_found",
         Becomes.FAILED, False, Breaker.SUCCESS),
        (401, {"type": "invalid_request_error"}, "POST", "auth_refused", Becomes.PENDING, False, Breaker.FAILURE),
        (403, {"type": "invalid_request_error"}, "POST", "auth_refused", Becomes.PENDING, False, Breaker.FAILURE),
        (429, {"type": "rate_limit_error"}, "POST", "rate_limited", Becomes.UNSETTLED, True, Breaker.FAILURE),
        (500, {"type": "api_error"}, "POST", "http_5xx", Becomes.UNSETTLED, True, Breaker.FAILURE),
        (503, None, "POST", "http_5xx", Becomes.UNSETTLED, True, Breaker.FAILURE),
    ],
)
def test_each_answer_means_what_stripe_says(status, error, method, outcome, becomes, retry, breaker) -> None:
    assert answers.classify(status, error, method=method) == outcome
    row = answers.meaning(outcome)
    assert (row.becomes, row.breaker) == (becomes, breaker)
    assert answers.should_retry(status, {}, method=method) is retry


def test_only_a_request_we_built_wrong_is_logged_as_our_defect() -> None:
    defects = sorted(o for o, row in answers.ANSWERS.items() if row.defect)
    assert defects == ["idempotency_mismatch", "invalid_request"]  # never the client's payment method


def test_only_a_card_error_is_a_decline() -> None:
    declines = [o for o, row in answers.ANSWERS.items() if row.becomes is Becomes.FAILED and row.acted is Acted.YES]
    assert declines == ["declined"]


@pytest.mark.parametrize(("status", "hint", "retried"), [
    (500, "false", False),  # the gateway knows the request must not be repeated
    (409, "false", False),
    (400, "true", True),  # it knows a transient cause behind a 4xx
    (402, "true", True),
    (402, "false", False),
    (503, "", True),
    (400, "", False),
])
def test_stripe_should_retry_wins_both_ways(status: int, hint: str, retried: bool) -> None:
    assert answers.should_retry(status, {"Stripe-Should-Retry": hint}) is retried


def _result(outcome: str, *, sent: bool, status: int | None = None, data: dict | None = None) -> GatewayResult:
    return GatewayResult(outcome=outcome, http_status=status, data=data or {}, sent=sent,
                         error_code=(data or {}).get("error", {}).get("code", ""))


@pytest.mark.parametrize(("outcome", "sent", "previous", "status"), [
    ("conflict", True, "pending", "unknown"),
    ("idempotency_mismatch", True, "pending", "unknown"),
    ("auth_refused", True, "pending", "pending"),
    ("auth_refused", True, "unknown", "unknown"),  # an earlier send may have charged
    ("connect_error", False, "pending", "pending"),
    ("connect_error", False, "unknown", "unknown"),
    ("pool_timeout", False, "pending", "pending"),
    ("timeout", True, "pending", "unknown"),
    ("invalid_request", True, "pending", "failed"),
])
def test_no_answer_but_a_decline_or_a_refusal_is_a_final_failure(outcome, sent, previous, status) -> None:
    assert create_outcome(_result(outcome, sent=sent), previous=previous).status == status


def test_a_decline_keeps_its_decline_code_and_the_intent() -> None:
    data = {"error": {**CARD_ERROR, "message": "Your card has insufficient funds.",
                      "payment_intent": {"id": "pi_1", "status": "requires_payment_method"}}}
    result = GatewayResult(outcome="declined", http_status=402, data=data, sent=True, error_code="insufficient_funds")
    got = create_outcome(result, previous="pending")
    assert (got.status, got.failure_code, got.gateway_id) == ("failed", "insufficient_funds", "pi_1")


@pytest.mark.parametrize(("intent", "status", "code"), [
    ({"id": "pi_1", "status": "succeeded"}, "succeeded", ""),
    ({"id": "pi_1", "status": "processing"}, "unknown", "gateway_processing"),
    ({"id": "pi_1", "status": "canceled", "cancellation_reason": "abandoned"}, "canceled", "abandoned"),
    ({"id": "pi_1", "status": "requires_payment_method",
      "last_payment_error": {"code": "payment_intent_authentication_failure", "message": "failed"}},
     "failed", "payment_intent_authentication_failure"),
])
def test_an_intent_decides_the_payment(intent: dict, status: str, code: str) -> None:
    got = intent_outcome(intent)
    assert (got.status, got.failure_code, got.gateway_id) == (status, code, "pi_1")


def test_requires_action_carries_what_the_customer_must_do() -> None:
    intent = {"id": "pi_1", "status": "requires_action", "client_secret": "pi_1_secret_x",
              "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": "https://acs.example/3ds"}}}
    got = intent_outcome(intent)
    assert got.status == "requires_action"
    assert got.next_action == {"type": "redirect_to_url", "redirect_to_url": {"url": "https://acs.example/3ds"},
                               "client_secret": "pi_1_secret_x"}
