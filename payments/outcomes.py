"""What a gateway result makes of a payment or refund: pure functions, no I/O.

Every path that learns something from the gateway (the first answer, a re-send, settlement
by asking, a gateway event, an operator's settlement) turns it into an `Outcome` here and
hands it to one writer, so a status means the same thing whichever way it was learnt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payments.gateway.answers import Becomes
from payments.gateway.results import GatewayResult
from payments.models import AttemptOutcome, RefundStatus
from payments.models import PaymentStatus as S

UNSETTLED_MESSAGE = "No usable answer from the gateway; the outcome is being settled."
UNAVAILABLE_MESSAGE = "The payment gateway could not be reached."


@dataclass(frozen=True)
class Outcome:
    status: str
    failure_code: str = ""
    failure_message: str = ""
    next_action: dict[str, Any] | None = None
    gateway_id: str | None = None  # the gateway's object, when the answer names it


def intent_outcome(intent: dict[str, Any]) -> Outcome:
    """A payment as the gateway's PaymentIntent says it stands."""
    status = intent.get("status")
    gateway_id = intent.get("id") if isinstance(intent.get("id"), str) else None
    error = intent.get("last_payment_error") or {}
    if status == "succeeded":
        return Outcome(S.SUCCEEDED, gateway_id=gateway_id)
    if status == "requires_action":
        raw = intent.get("next_action")
        action: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return Outcome(S.REQUIRES_ACTION, gateway_id=gateway_id,
                       next_action={**action, "client_secret": intent.get("client_secret")})
    if status == "requires_payment_method":
        # Confirmed and refused: a decline, or authentication the customer failed.
        code = str(error.get("decline_code") or error.get("code") or "requires_payment_method")
        return Outcome(S.FAILED, code, str(error.get("message") or "The payment was not completed."),
                       gateway_id=gateway_id)
    if status == "canceled":
        return Outcome(S.CANCELED, str(intent.get("cancellation_reason") or "canceled"),
                       "The payment was canceled at the gateway.", gateway_id=gateway_id)
    # processing (asynchronous methods), or a state we never ask for: ask again later.
    return Outcome(S.UNKNOWN, f"gateway_{status or 'unreadable'}",
                   "The gateway has not settled the payment yet.", gateway_id=gateway_id)


def create_outcome(result: GatewayResult, *, previous: str) -> Outcome:
    """The payment after a create (or a re-send of it) answered with `result`. `previous` is
    the status before this send: a send that got nowhere never makes an earlier one unsent."""
    outcome = _create_outcome(result)
    if outcome.status == S.PENDING and previous in (S.UNKNOWN, S.PROCESSING):
        return Outcome(S.UNKNOWN, result.error_code or result.outcome, UNSETTLED_MESSAGE)
    return outcome


def _create_outcome(result: GatewayResult) -> Outcome:
    becomes = result.meaning.becomes
    if result.error_code == "settle_manually":
        return Outcome(S.UNKNOWN, result.error_code, result.error_message)
    if becomes is Becomes.INTENT:
        return intent_outcome(result.data)
    if becomes is Becomes.FAILED:
        intent = (result.data.get("error") or {}).get("payment_intent") or {}
        if isinstance(intent, dict) and intent.get("status") == "requires_action":
            return intent_outcome(intent)
        gateway_id = intent.get("id") if isinstance(intent, dict) else None
        # The client's payment method, refused: one code of ours, whichever code Stripe gave,
        # so a client can tell its own input from a decline.
        invalid = AttemptOutcome.PAYMENT_METHOD_INVALID
        code = invalid if result.outcome == invalid else result.error_code or result.outcome
        message = result.error_message or ("The gateway declined the payment." if result.outcome == "declined"
                                           else "The gateway refused the request.")
        return Outcome(S.FAILED, code, message, gateway_id=gateway_id)
    if becomes is Becomes.PENDING or not result.sent:
        code = {"circuit_open": "circuit_open", "auth_refused": "gateway_auth_refused",
                "pool_timeout": "gateway_pool_full", "saturated": "gateway_saturated"}.get(
            result.outcome, "gateway_unavailable")
        return Outcome(S.PENDING, code, result.error_message if result.outcome in ("circuit_open", "saturated")
                       else UNAVAILABLE_MESSAGE)
    return Outcome(S.UNKNOWN, result.outcome, UNSETTLED_MESSAGE)


def refund_outcome(result: GatewayResult) -> Outcome:
    """A refund after a create or a retrieve answered with `result`."""
    becomes = result.meaning.becomes
    if becomes is Becomes.INTENT:
        status = result.data.get("status")
        gateway_id = result.data.get("id") if isinstance(result.data.get("id"), str) else None
        if status == "succeeded":
            return Outcome(RefundStatus.SUCCEEDED, gateway_id=gateway_id)
        if status in ("failed", "canceled"):
            return Outcome(RefundStatus.FAILED, str(result.data.get("failure_reason") or status),
                           "The gateway could not refund the payment.", gateway_id=gateway_id)
        return Outcome(RefundStatus.UNKNOWN, f"gateway_{status or 'unreadable'}",
                       "The gateway has not settled the refund yet.", gateway_id=gateway_id)
    if becomes is Becomes.FAILED:
        return Outcome(RefundStatus.FAILED, result.error_code or result.outcome,
                       result.error_message or "The gateway refused the refund.")
    if becomes is Becomes.PENDING or not result.sent:
        return Outcome(RefundStatus.PENDING, "gateway_unavailable", UNAVAILABLE_MESSAGE)
    return Outcome(RefundStatus.UNKNOWN, result.outcome, UNSETTLED_MESSAGE)
