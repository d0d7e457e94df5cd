"""What a gateway answer means: one table, one function, tested row by row.

A gateway answer means what Stripe's documentation says it means, not what its status range
suggests: only a card error is a decline; a conflict, a refused credential or an answer we
could not read is never a final `failed`. Every caller (the retry policy, the breaker, the
payment and refund outcome writers, the health probe) asks this module instead of looking at
status codes itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Acted(str, Enum):
    """Whether the gateway may have acted on the request (charged, refunded)."""

    YES = "yes"  # it answered with what it did
    NO = "no"  # it refused before doing anything, or the request never reached it
    MAYBE = "maybe"  # no usable answer to a request that may have arrived: ask, never assume


class Becomes(str, Enum):
    """What a payment becomes after a create answered this way."""

    INTENT = "intent"  # whatever the intent's own status says
    FAILED = "failed"  # final: the gateway refused this payment
    UNSETTLED = "unsettled"  # unknown once anything was sent (pending if nothing was)
    PENDING = "pending"  # nothing reached the gateway: the client retries with its key


class Breaker(str, Enum):
    SUCCESS = "success"  # the gateway works as it should
    FAILURE = "failure"  # counts toward opening the circuit
    IGNORED = "ignored"  # says nothing about the gateway's health


@dataclass(frozen=True)
class Meaning:
    acted: Acted
    becomes: Becomes
    retry: bool  # retried at once with the same key, within the call's deadline
    breaker: Breaker
    alert: str = ""  # an ops finding this answer raises, beyond the payment itself
    defect: bool = False  # the gateway says our request was wrong: logged as our bug


# Rows are outcomes, the names PaymentAttempt.outcome stores.
ANSWERS: dict[str, Meaning] = {
    # 2xx: the intent (or refund) as the gateway holds it.
    "ok": Meaning(Acted.YES, Becomes.INTENT, retry=False, breaker=Breaker.SUCCESS),
    # 402 / card_error: the only decline.
    "declined": Meaning(Acted.YES, Becomes.FAILED, retry=False, breaker=Breaker.SUCCESS),
    # 409: another request with this key is still running there; Stripe: it executed nothing
    # and is safe to retry with the same key. Past the deadline the first try's fate is unknown.
    "conflict": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=True, breaker=Breaker.IGNORED),
    # 400 idempotency_error: the key was used with other parameters. The first request may
    # have charged; the re-send was not byte-identical, which is our bug.
    "idempotency_mismatch": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=False, breaker=Breaker.SUCCESS,
                                    alert="idempotency_mismatch", defect=True),
    # 400 naming the payment method (Stripe: `resource_missing`, `param: payment_method`, or it
    # cannot be used): the client's input, not our bug. Refused, nothing charged.
    "payment_method_invalid": Meaning(Acted.NO, Becomes.FAILED, retry=False, breaker=Breaker.SUCCESS),
    # Any other 400 (and 404 on a create): a request we built wrong. Refused, nothing charged.
    "invalid_request": Meaning(Acted.NO, Becomes.FAILED, retry=False, breaker=Breaker.SUCCESS, defect=True),
    # 404 on a retrieve: the gateway holds no such object.
    "not_found": Meaning(Acted.NO, Becomes.FAILED, retry=False, breaker=Breaker.SUCCESS),
    # 401/403: our key is wrong or rotated. Stripe authenticates before acting, so nothing was
    # charged; every payment would hit the same wall, so the breaker counts it.
    "auth_refused": Meaning(Acted.NO, Becomes.PENDING, retry=False, breaker=Breaker.FAILURE,
                            alert="credentials_refused"),
    # 429: slow down; retried after its Retry-After.
    "rate_limited": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=True, breaker=Breaker.FAILURE),
    # 5xx: the gateway may have acted before failing.
    "http_5xx": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=True, breaker=Breaker.FAILURE),
    "timeout": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=True, breaker=Breaker.FAILURE),
    "bad_response": Meaning(Acted.MAYBE, Becomes.UNSETTLED, retry=False, breaker=Breaker.FAILURE),
    # No connection: nothing arrived (unless an earlier try of the same call did).
    "connect_error": Meaning(Acted.NO, Becomes.UNSETTLED, retry=True, breaker=Breaker.FAILURE),
    # Refused here before sending: the breaker is open, or no pooled connection came free in time.
    "circuit_open": Meaning(Acted.NO, Becomes.PENDING, retry=False, breaker=Breaker.IGNORED),
    "pool_timeout": Meaning(Acted.NO, Becomes.UNSETTLED, retry=False, breaker=Breaker.IGNORED),
    # Refused here before sending: this process has as many calls in flight as the gateway's
    # latency allows (payments.gateway.limiter). Nothing left; the client retries with its key.
    "saturated": Meaning(Acted.NO, Becomes.PENDING, retry=False, breaker=Breaker.IGNORED),
}


def classify(status: int | None, error: Mapping[str, Any] | None = None, *, method: str = "POST") -> str:
    """The outcome of an HTTP answer; `error` is the body's `error` object when there is one."""
    if status is None:
        return "bad_response"
    error = error or {}
    if 200 <= status < 300:
        return "ok"
    if status == 402 or error.get("type") == "card_error":
        return "declined"
    if status == 409:
        return "conflict"
    if status in (401, 403):
        return "auth_refused"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "http_5xx"
    if error.get("type") == "idempotency_error":
        return "idempotency_mismatch"
    if status == 404 and method == "GET":
        return "not_found"
    if status == 400 and error.get("param") == "payment_method":
        return "payment_method_invalid"
    if 400 <= status < 500:
        return "invalid_request"
    return "bad_response"  # 1xx/3xx: we follow no redirects for a payment


def meaning(outcome: str) -> Meaning:
    return ANSWERS[outcome]


def should_retry(status: int, headers: Mapping[str, str], *, method: str = "POST") -> bool:
    """Retry this answer with the same key? The gateway's `Stripe-Should-Retry` wins over our
    own rules both ways, as in stripe-python's `_should_retry`."""
    hint = (headers.get("Stripe-Should-Retry") or "").strip().lower()
    if hint == "true":
        return True
    if hint == "false":
        return False
    return ANSWERS[classify(status, method=method)].retry
