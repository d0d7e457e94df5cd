"""The API's representation of our objects (the contract in DESIGN.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from payments.models import Payment, PaymentStatus, Refund


def payment_to_dict(payment: Payment, *, refunds: Iterable[Refund] | None = None) -> dict[str, Any]:
    """`refunds` when the caller knows them (a payment just created has none); otherwise they
    are read, from a prefetch when the caller made one."""
    return {
        "id": payment.id,
        "object": "payment",
        "status": payment.status,
        "amount": payment.amount,
        "amount_refunded": payment.amount_refunded,
        "currency": payment.currency,
        "reference": payment.reference,
        "metadata": payment.metadata,
        "gateway_id": payment.gateway_id,
        "failure_code": payment.failure_code or None,
        "failure_message": payment.failure_message or None,
        "next_action": payment.next_action if payment.status == PaymentStatus.REQUIRES_ACTION else None,
        "attempts": payment.attempt_count,
        "refunds": [refund_to_dict(r) for r in (payment.refunds.all() if refunds is None else refunds)],
        "created": payment.created.isoformat(),
        "updated": payment.updated.isoformat(),
    }


def refund_to_dict(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "object": "refund",
        "payment": refund.payment_id,
        "amount": refund.amount,
        "status": refund.status,
        "gateway_id": refund.gateway_id,
        "failure_code": refund.failure_code or None,
        "failure_message": refund.failure_message or None,
        "created": refund.created.isoformat(),
        "updated": refund.updated.isoformat(),
    }
