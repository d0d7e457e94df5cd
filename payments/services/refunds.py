"""Refunds: reserve, send, settle. The API and the console both come through here.

A refund holds its amount against the payment while it is pending, unknown or succeeded, so
concurrent refunds can never exceed the payment; a failed one gives its amount back. The
payment's refunded amount and status come only from refunds the gateway confirmed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from payments.figures import record_refund_outcome
from payments.gateway import get_gateway
from payments.models import (
    PAYMENT_TRANSITIONS,
    REFUND_RESERVING,
    ApiClient,
    IdempotencyRecord,
    Payment,
    Refund,
    RefundStatus,
)
from payments.models import PaymentStatus as S
from payments.outcomes import Outcome, refund_outcome
from payments.services.recording import db_connection_release, settle_delay
from payments.tasks import refund_settle_task

logger = logging.getLogger(__name__)

REFUNDABLE = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED})
UNFINISHED = frozenset({RefundStatus.PENDING, RefundStatus.UNKNOWN})


class RefundRefused(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def refund_create(*, client: ApiClient, record: IdempotencyRecord | None, payment_id: str, amount: int | None,
                  reason: str = "", created_by: Any = None) -> Refund:
    """Reserves the amount against the payment, under its lock, and records the refund.
    `record` is the API request's idempotency claim; the console passes None."""
    if record is not None and record.resource_id:
        return Refund.objects.get(pk=record.resource_id)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id, client=client)
        if payment.status not in REFUNDABLE:
            raise RefundRefused("payment_not_refundable", f"A {payment.status} payment cannot be refunded.")
        reserved = (Refund.objects.filter(payment=payment, status__in=REFUND_RESERVING)
                    .aggregate(total=Sum("amount"))["total"] or 0)
        left = payment.amount - reserved
        amount = left if amount is None else amount
        if left <= 0:
            raise RefundRefused("amount_too_small", "Nothing is left to refund.", "amount")
        if amount > left:
            raise RefundRefused("amount_too_large", f"Only {left} is left to refund.", "amount")
        if amount <= 0:
            raise RefundRefused("amount_too_small", "A refund must be at least 1.", "amount")
        refund = Refund.objects.create(
            payment=payment, client=client, amount=amount, reason=reason, created_by=created_by,
            idempotency_key=record.key if record is not None else f"console-{uuid.uuid4().hex}",
            request_hash=record.request_hash if record is not None else "",
        )
        if record is not None:
            IdempotencyRecord.objects.filter(pk=record.pk).update(resource_id=refund.id)
            record.resource_id = refund.id
    logger.info("refund created", extra={"category": "refund_created", "refund_id": refund.id,
                                         "payment_id": payment_id, "amount": amount})
    return refund


def refund_submit(*, refund_id: str) -> Refund:
    """Sends the refund to the gateway (again), with the same idempotency key every time."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status not in UNFINISHED:
        return refund
    if refund.gateway_id:
        return refund_reconcile(refund_id=refund_id)
    previous = refund.status
    db_connection_release()
    result = get_gateway().create_refund(
        idempotency_key=refund.gateway_idempotency_key, payment_intent=refund.payment.gateway_id or "",
        amount=refund.amount, metadata={"refund_id": refund.id, "payment_id": refund.payment_id},
    )
    outcome = refund_outcome(result)
    if outcome.status == RefundStatus.PENDING and previous == RefundStatus.UNKNOWN:
        # This send got nowhere; an earlier one may have arrived.
        outcome = Outcome(RefundStatus.UNKNOWN, result.error_code or result.outcome, refund.failure_message)
    return _refund_write(refund_id, outcome, only_from=UNFINISHED)


def refund_reconcile(*, refund_id: str) -> Refund:
    """Asks the gateway for the refund and moves it to what it says; a final refund stays."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.status not in UNFINISHED or not refund.gateway_id:
        return refund
    db_connection_release()
    result = get_gateway().retrieve_refund(refund.gateway_id)
    if not result.ok:
        return refund
    return _refund_write(refund_id, refund_outcome(result), only_from=UNFINISHED)


def refund_settle(*, refund_id: str) -> Refund:
    """Settles a refund whose outcome is unknown: asks for it by id, or re-sends it with its key."""
    refund = Refund.objects.get(pk=refund_id)
    if refund.status != RefundStatus.UNKNOWN:
        return refund
    Refund.objects.filter(pk=refund_id).update(settle_count=F("settle_count") + 1)
    settled = refund_submit(refund_id=refund_id)
    if settled.status == RefundStatus.UNKNOWN and settled.updated == refund.updated:
        next_at = timezone.now() + timedelta(seconds=settle_delay(settle_count=refund.settle_count + 1))
        Refund.objects.filter(pk=refund_id, status=RefundStatus.UNKNOWN).update(next_settle_at=next_at)
    return settled


def refund_settle_due(*, limit: int = 500) -> int:
    """Queues the settlement of every unknown refund that is due; returns how many."""
    due = list(Refund.objects.filter(Q(next_settle_at__isnull=True) | Q(next_settle_at__lte=timezone.now()),
                                     status=RefundStatus.UNKNOWN).values_list("id", flat=True)[:limit])
    for refund_id in due:
        _queue_settle(refund_id, countdown=0)
    return len(due)


def _queue_settle(refund_id: str, *, countdown: int) -> None:

    try:
        # One try, bounded by the broker's socket timeouts; the sweep is the retry.
        refund_settle_task.apply_async((refund_id,), countdown=countdown, retry=False)
    except Exception:  # noqa: BLE001 - the next sweep queues it again
        logger.warning("could not queue refund settlement", extra={"category": "settle_queue_error",
                                                                   "refund_id": refund_id})


def _refund_write(refund_id: str, outcome: Outcome, *, only_from: frozenset[str]) -> Refund:
    # Refund before payment, always: the one lock order for refund writes.
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        if refund.status not in only_from:
            return refund
        if refund.status == RefundStatus.PENDING:  # a send's answer; a settled unknown was counted
            transaction.on_commit(lambda: record_refund_outcome(status=str(outcome.status)))
        refund.status = outcome.status
        refund.failure_code, refund.failure_message = outcome.failure_code[:100], outcome.failure_message[:500]
        if outcome.gateway_id and not refund.gateway_id:
            refund.gateway_id = outcome.gateway_id
        refund.next_settle_at = None
        if outcome.status == RefundStatus.SUCCEEDED:
            payment.amount_refunded += refund.amount
            new = S.REFUNDED if payment.amount_refunded >= payment.amount else S.PARTIALLY_REFUNDED
            if new in PAYMENT_TRANSITIONS[payment.status]:
                payment.status = new
            payment.save(update_fields=["amount_refunded", "status", "updated"])
        elif outcome.status == RefundStatus.UNKNOWN:
            delay = settle_delay(settle_count=refund.settle_count)
            refund.next_settle_at = timezone.now() + timedelta(seconds=delay)
            transaction.on_commit(lambda: _queue_settle(refund_id, countdown=delay))
            logger.warning("refund outcome unknown", extra={"category": "refund_unknown_outcome",
                                                            "refund_id": refund.id, "payment_id": payment.id})
        elif outcome.status == RefundStatus.FAILED:
            logger.warning("refund failed", extra={"category": "refund_failed", "refund_id": refund.id,
                                                   "failure_code": refund.failure_code})
        refund.save()
    return refund
