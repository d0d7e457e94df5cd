"""What a payment or a refund answers its client: 201 with it once final (a refused
payment method too: `failed`, `payment_method_invalid`, as any payment the gateway refused),
202 while it is being settled, 503 + Retry-After when nothing reached the gateway."""

from __future__ import annotations

from payments.api.serializers import payment_to_dict, refund_to_dict
from payments.models import UNSETTLED_STATUSES, Payment, PaymentStatus, Refund, RefundStatus
from payments.services.idempotency import ApiAnswer


def payment_answer_fresh(payment: Payment) -> ApiAnswer:
    # A payment this request opened has no refunds: no query for them on the create path.
    return payment_answer(payment, refunds=())


def payment_answer(payment: Payment, *, refunds: tuple[()] | None = None) -> ApiAnswer:
    body = payment_to_dict(payment, refunds=refunds)
    if payment.status == PaymentStatus.PENDING:
        # Nothing reached the gateway: the client retries with the same key and we send it then.
        code = payment.failure_code or "gateway_unavailable"
        why = "is busy" if code == "gateway_saturated" else "is unavailable"
        return ApiAnswer(503, {"error": {"type": "api_error", "code": code, "param": None,
                                         "message": f"The payment gateway {why}; nothing was charged. "
                                                    "Retry with the same Idempotency-Key."}},
                         final=False, retry_after=gateway_retry_after(code))
    if payment.status in UNSETTLED_STATUSES:
        return ApiAnswer(202, body, final=False)
    # requires_action too: the customer's next step is in next_action; the payment is followed
    # to its end through the gateway's events and by asking.
    return ApiAnswer(201, body, final=True)


def gateway_retry_after(code: str = "") -> float:
    from payments.gateway import get_gateway

    gateway = get_gateway()
    if code == "gateway_saturated" and gateway.limiter is not None:
        # A slot frees within about one call's latency; no round-trip to the breaker's Redis.
        return gateway.limiter.retry_after()
    breaker = gateway.breaker
    if breaker is None:
        return 1.0
    return max(1.0, breaker.snapshot().retry_after)


def refund_answer(refund: Refund) -> ApiAnswer:
    if refund.status == RefundStatus.PENDING:
        return ApiAnswer(503, {"error": {"type": "api_error", "code": "gateway_unavailable", "param": None,
                                         "message": "The payment gateway is unavailable; retry with the same key."}},
                         final=False, retry_after=gateway_retry_after())
    if refund.status == RefundStatus.UNKNOWN:
        return ApiAnswer(202, refund_to_dict(refund), final=False)
    return ApiAnswer(201, refund_to_dict(refund), final=True)
