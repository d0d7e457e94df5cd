"""The one writer of a gateway result onto a payment (fields from payments/outcomes.py), and
the settlement it schedules when the outcome is unknown."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from payments.figures import record_payment_outcome
from payments.gateway import GatewayResult
from payments.gateway.results import Attempt
from payments.models import (
    FINAL_STATUSES,
    PAYMENT_TRANSITIONS,
    IdempotencyRecord,
    Payment,
    PaymentAttempt,
)
from payments.models import PaymentStatus as S
from payments.outcomes import Outcome
from payments.services import create_path_sql
from payments.services.idempotency import ApiAnswer
from payments.tasks import payment_settle_task

logger = logging.getLogger(__name__)


# Settlement tasks queued from a payment's request go out on a thread of their own, so that a
# Redis that hangs (kombu's publish waits its socket timeout, 2 s, three times) never holds
# the answer past the payment's deadline; at most this many at once, the sweep does the rest.
SETTLE_PUBLISHERS = 8


_settle_publishers = threading.BoundedSemaphore(SETTLE_PUBLISHERS)


# --- Payments ------------------------------------------------------------------------------
def db_connection_release() -> None:
    # Never hold a pooled database connection across a gateway call of up to the deadline:
    # a slow gateway would otherwise exhaust the database pool.
    if not connection.in_atomic_block:
        connection.close()


# What a request that opened a payment answers for it, kept with the payment's first write.
Answer = Callable[[Payment], ApiAnswer]


def payment_outcome_write_first(payment: Payment, outcome: Outcome, result: GatewayResult,
                                release: tuple[IdempotencyRecord, Answer] | None = None) -> Payment | None:
    """The first answer for a payment this request opened: one statement writes it, its
    attempts and (with `release`) the idempotency record's answer, instead of a locked read, a
    save and two more commits. Only the holder of the claim writes a processing payment with
    no attempts yet, so the condition is the lock. None when the outcome needs follow-up
    (settlement, the customer's authentication: `payment_outcome_write` schedules it) or when the payment
    moved meanwhile; the caller then uses `payment_outcome_write` and the claim is released as usual."""
    if outcome.status in (S.UNKNOWN, S.REQUIRES_ACTION):
        return None
    now = timezone.now()
    fields: dict[str, Any] = {"status": outcome.status, "failure_code": outcome.failure_code[:100],
                              "failure_message": outcome.failure_message[:500],
                              "attempt_count": len(result.attempts), "updated": now}
    if outcome.gateway_id:
        fields["gateway_id"] = outcome.gateway_id
    if outcome.status in FINAL_STATUSES:
        fields["next_settle_at"] = None
    before = {name: getattr(payment, name) for name in fields}
    for name, value in fields.items():
        setattr(payment, name, value)
    kept = None
    if release is not None:
        record, answer = release
        given = answer(payment)
        kept = (record.pk, given.status if given.final else None, given.body if given.final else None)
    if not create_path_sql.payment_apply_first(payment_id=payment.pk, fields=fields, attempts=result.attempts,
                                               release=kept):
        for name, value in before.items():
            setattr(payment, name, value)
        return None
    if release is not None:
        record.locked_until = None
        if given.final:
            record.response_status, record.response_body = given.status, given.body
    _count_outcome(outcome, previous=S.PENDING)
    return payment


def payment_outcome_write(payment_id: str, outcome: Outcome, *, attempts: Sequence[Attempt], operation: str,
                          only_from: Collection[str], previous: str | None = None) -> Payment:
    """Writes what the gateway said, under the payment's lock, if the payment is still in one of
    `only_from` (another path may have settled it meanwhile: then it is left as it is).
    `previous` is the status before a send claimed the payment (a read claims nothing)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status not in only_from:
            # Another path (the gateway's event, a settlement) decided first; what this call
            # sent is still part of the payment's history.
            _attempts_add(payment, attempts, operation=operation)
            return payment
        return _write_outcome(payment, outcome, attempts=attempts, operation=operation,
                              previous=payment.status if previous is None else previous)


def _count_outcome(outcome: Outcome, *, previous: str) -> None:
    """The payment figures count each payment's answer to its client once: the first answer
    of a send (a 503 that sent nothing is 'shed'; a retry with the key is answered anew), and
    the end of a wait for the customer. An unknown outcome settled later was counted as unknown."""
    if previous == S.PENDING or (previous == S.REQUIRES_ACTION and outcome.status in FINAL_STATUSES):
        status = "shed" if outcome.status == S.PENDING else str(outcome.status)
        record_payment_outcome(status=status, failure_code=outcome.failure_code if status == S.FAILED else "")


def _write_outcome(payment: Payment, outcome: Outcome, *, attempts: Sequence[Attempt], operation: str,
                   previous: str) -> Payment:
    """The one writer of a payment's outcome (the create path's first answer aside, which
    `create_path_sql.payment_apply_first` writes in one statement with the same fields). A move
    the lifecycle does not allow, such as a final state going backwards, is refused and logged."""
    if outcome.status != payment.status and outcome.status not in PAYMENT_TRANSITIONS[payment.status]:
        logger.warning("payment outcome refused: %s -> %s", payment.status, outcome.status, extra={
            "category": "payment_transition_refused", "payment_id": payment.id,
            "from_status": payment.status, "to_status": outcome.status, "operation": operation})
        _attempts_add(payment, attempts, operation=operation)
        return payment
    fields = ["status", "failure_code", "failure_message", "next_action", "attempt_count", "updated",
              "next_settle_at"]
    if outcome.gateway_id and not payment.gateway_id:
        payment.gateway_id = outcome.gateway_id
        fields.append("gateway_id")
    unsettled = outcome.status == S.UNKNOWN and payment.status != S.UNKNOWN
    payment.status = outcome.status
    payment.failure_code, payment.failure_message = outcome.failure_code[:100], outcome.failure_message[:500]
    payment.next_action = outcome.next_action if outcome.status == S.REQUIRES_ACTION else None
    _attempts_add(payment, attempts, operation=operation, save=False)
    if outcome.status in (S.UNKNOWN, S.REQUIRES_ACTION):
        # Asked again on the backoff: settlement for an unknown outcome, polling while the
        # customer authenticates (the gateway's events usually arrive first).
        delay = settle_delay(settle_count=payment.settle_count)
        payment.next_settle_at = timezone.now() + timedelta(seconds=delay)
        transaction.on_commit(lambda: _schedule_settle_off_thread(payment.id, delay))
        if unsettled:
            logger.warning("payment outcome unknown", extra={
                "category": "payment_unknown_outcome", "payment_id": payment.id,
                "idempotency_key": payment.gateway_idempotency_key, "outcome": outcome.failure_code,
                "retry_in_s": delay})
    elif outcome.status in FINAL_STATUSES:
        payment.next_settle_at = None
    payment.save(update_fields=fields)
    transaction.on_commit(lambda: _count_outcome(outcome, previous=previous))
    return payment


def _attempts_add(payment: Payment, attempts: Sequence[Attempt], *, operation: str, save: bool = True) -> None:
    """The tries of one gateway call, numbered after the payment's earlier ones (under its lock)."""
    if not attempts:
        return
    base = payment.attempt_count
    PaymentAttempt.objects.bulk_create(
        PaymentAttempt(payment=payment, number=base + i, operation=operation, started_at=a.started_at,
                       duration_ms=a.duration_ms, outcome=a.outcome, http_status=a.http_status,
                       gateway_request_id=a.request_id[:255], error=a.error[:255])
        for i, a in enumerate(attempts, start=1)
    )
    payment.attempt_count = base + len(attempts)
    if save:
        payment.save(update_fields=["attempt_count"])


def settle_delay(*, settle_count: int) -> int:
    """s until the next settlement of something asked `settle_count` times already."""
    delays = settings.PAYMENT_SETTLE_DELAYS
    return delays[min(settle_count, len(delays) - 1)]


def payment_settle_schedule(payment_id: str, delay: int) -> None:

    try:
        # One try, bounded by the broker's socket timeouts; the sweep is the retry.
        payment_settle_task.apply_async((payment_id,), countdown=delay, retry=False)
    except Exception:  # noqa: BLE001 - the beat sweep picks it up if the broker is away
        logger.warning("could not queue settlement", extra={"category": "settle_queue_error",
                                                            "payment_id": payment_id})


def _schedule_settle_off_thread(payment_id: str, delay: int) -> None:
    if not _settle_publishers.acquire(blocking=False):
        logger.warning("could not queue settlement: %d still being queued", SETTLE_PUBLISHERS,
                       extra={"category": "settle_queue_error", "payment_id": payment_id})
        return

    def publish() -> None:
        try:
            payment_settle_schedule(payment_id, delay)
        finally:
            _settle_publishers.release()

    threading.Thread(target=publish, name="settle-queue", daemon=True).start()
