"""A payment from the API to the gateway: created once per idempotency record, claimed for one
send, sent, its first answer recorded."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.gateway import get_gateway
from payments.ids import new_id
from payments.models import (
    ApiClient,
    IdempotencyRecord,
    Payment,
)
from payments.models import PaymentStatus as S
from payments.outcomes import Outcome, create_outcome
from payments.services import create_path_sql
from payments.services.idempotency import RESEND_WINDOW
from payments.services.recording import (
    Answer,
    db_connection_release,
    payment_outcome_write,
    payment_outcome_write_first,
)

logger = logging.getLogger(__name__)


def payment_create(*, client: ApiClient, record: IdempotencyRecord, amount: int, currency: str,
                   payment_method: str, reference: str, metadata: dict[str, str]) -> Payment:
    """The payment of this idempotency record, created once."""
    if record.resource_id:
        return Payment.objects.get(pk=record.resource_id)
    with transaction.atomic():
        payment = Payment.objects.create(
            client=client, idempotency_key=record.key, request_hash=record.request_hash, amount=amount,
            currency=currency, payment_method=payment_method, reference=reference, metadata=metadata,
        )
        IdempotencyRecord.objects.filter(pk=record.pk).update(resource_id=payment.id)
    record.resource_id = payment.id
    logger.info("payment created", extra={"category": "payment_created", "payment_id": payment.id,
                                          "amount": amount, "currency": currency})
    return payment


def payment_open(*, client: ApiClient, idempotency_key: str, request_hash: str, endpoint: str, lease: datetime,
                 amount: int, currency: str, payment_method: str, reference: str,
                 metadata: dict[str, str]) -> tuple[Payment, IdempotencyRecord]:
    """A new payment already claimed for its first send (processing) and the idempotency
    key's claim, in one statement (`idempotency_claim`'s `open_first`). If the process dies
    before the gateway answers, the sweep settles it like any payment stale in processing."""
    payment, record = create_path_sql.payment_open(
        client=client, key=idempotency_key, endpoint=endpoint, request_hash=request_hash, lease=lease,
        now=timezone.now(), payment_id=new_id("pay"), amount=amount, currency=currency,
        payment_method=payment_method, reference=reference, metadata=metadata,
    )
    logger.info("payment created", extra={"category": "payment_created", "payment_id": payment.id,
                                          "amount": amount, "currency": currency})
    return payment, record


def _claim_for_gateway(payment_id: str) -> str | None:
    """Moves the payment to processing if nobody else is sending it right now; returns the
    status it had (None when it was not ours to send)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER)
    with transaction.atomic():
        payment = (Payment.objects.select_for_update(skip_locked=True)
                   .filter(pk=payment_id)
                   .filter(Q(status__in=[S.PENDING, S.UNKNOWN]) | Q(status=S.PROCESSING, updated__lt=stale))
                   .only("status").first())
        if payment is None:
            return None
        Payment.objects.filter(pk=payment_id).update(status=S.PROCESSING, updated=now)
        return payment.status


def payment_submit(*, payment_id: str, opened: Payment | None = None,
                   release: tuple[IdempotencyRecord, Answer] | None = None) -> Payment:
    """Sends the payment to the gateway (again), with the same idempotency key every time.
    `opened` is a payment `payment_open` just created, already claimed for this send; with
    `release`, its idempotency claim ends with the first answer, in the same statement."""
    if opened is not None and opened.pk == payment_id:
        payment, previous = opened, S.PENDING
    else:
        claimed = _claim_for_gateway(payment_id)
        if claimed is None:
            return Payment.objects.get(pk=payment_id)
        previous = S(claimed)
        payment = Payment.objects.get(pk=payment_id)
    if timezone.now() - payment.created > RESEND_WINDOW and payment.attempt_count:
        # Past the gateway's idempotency window a re-send could charge twice: stop, ask ops.
        outcome = Outcome(S.UNKNOWN, "settle_manually", "past the gateway's idempotency window")
        return payment_outcome_write(payment_id, outcome, attempts=[], operation="create", only_from={S.PROCESSING},
                                     previous=previous)
    db_connection_release()
    metadata = {**payment.metadata, "payment_id": payment.id}
    if payment.reference:
        metadata["reference"] = payment.reference
    result = get_gateway().create_payment_intent(
        idempotency_key=payment.gateway_idempotency_key, amount=payment.amount, currency=payment.currency,
        payment_method=payment.payment_method, metadata=metadata,
    )
    outcome = create_outcome(result, previous=previous)
    if opened is not None:
        applied = payment_outcome_write_first(payment, outcome, result, release)
        if applied is not None:
            return applied
    return payment_outcome_write(payment_id, outcome, attempts=result.attempts, operation="create", only_from={S.PROCESSING},
                                 previous=previous)
