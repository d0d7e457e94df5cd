"""Unknown and unfinished payments settled by asking the gateway: reconcile, settle, expire,
settle by hand, and the beat's sweep."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from payments.gateway import get_gateway
from payments.models import (
    FINAL_STATUSES,
    SETTLED_BY_HAND,
    Payment,
)
from payments.models import PaymentStatus as S
from payments.outcomes import Outcome, intent_outcome
from payments.services import refunds
from payments.services.recording import (
    db_connection_release,
    payment_outcome_write,
    payment_settle_schedule,
    settle_delay,
)
from payments.services.submit import payment_submit

logger = logging.getLogger(__name__)


# Statuses settlement works on: asked again until the gateway's answer is final.
SETTLED_BY_ASKING = SETTLED_BY_HAND


def payment_reconcile(*, payment_id: str, gateway_id: str | None = None) -> Payment:
    """Asks the gateway for the payment's intent and moves the payment to what it says.
    `gateway_id` serves when the payment has none yet (its answer was lost) and the intent's
    metadata names this payment. Never moves a final payment backwards; a gateway that cannot
    be asked now leaves the payment as it is."""
    payment = Payment.objects.get(pk=payment_id)
    intent_id = payment.gateway_id or gateway_id
    if payment.status in FINAL_STATUSES or payment.status == S.PENDING or not intent_id:
        return payment
    db_connection_release()
    result = get_gateway().retrieve_payment_intent(intent_id)
    if result.outcome == "not_found" and payment.gateway_id:
        outcome = Outcome(S.UNKNOWN, "not_found_at_gateway",
                          "The gateway holds no intent with this payment's gateway id; settle it by hand.")
    elif not result.ok:
        return payment
    elif (result.data.get("metadata") or {}).get("payment_id") not in (None, payment.id):
        logger.warning("intent belongs to another payment", extra={
            "category": "gateway_intent_mismatch", "payment_id": payment.id, "gateway_id": intent_id})
        return payment
    else:
        outcome = intent_outcome(result.data)
    return payment_outcome_write(payment_id, outcome, attempts=result.attempts, operation="retrieve",
                                 only_from={S.UNKNOWN, S.PROCESSING, S.REQUIRES_ACTION})


def payment_cancel_expired(*, payment: Payment) -> Payment:
    """A payment whose customer never authenticated within PAYMENT_ACTION_EXPIRY: its intent is
    canceled at the gateway (so it cannot be completed later) and the payment follows it."""
    if payment.status != S.REQUIRES_ACTION or not payment.gateway_id:
        return payment
    if timezone.now() - payment.created < timedelta(seconds=settings.PAYMENT_ACTION_EXPIRY):
        return payment
    db_connection_release()
    result = get_gateway().cancel_payment_intent(gateway_id=payment.gateway_id,
                                                 idempotency_key=f"{payment.gateway_idempotency_key}-cancel")
    if not result.ok:
        # Most often the customer finished just now and the intent can no longer be canceled:
        # what the gateway holds decides.
        return payment_reconcile(payment_id=payment.id)
    return payment_outcome_write(payment.id, intent_outcome(result.data), attempts=result.attempts, operation="cancel",
                                 only_from={S.REQUIRES_ACTION})


def payment_settle(*, payment_id: str) -> Payment:
    """Settles a payment whose outcome we do not know, or that waits for its customer: asks
    the gateway for its intent when it has one, re-sends it with its key when it has none."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in SETTLED_BY_ASKING or payment.failure_code == "settle_manually":
        return payment
    Payment.objects.filter(pk=payment_id).update(settle_count=F("settle_count") + 1)
    payment.settle_count += 1
    if not payment.gateway_id:
        return payment_submit(payment_id=payment_id)
    settled = payment_reconcile(payment_id=payment_id)
    if settled.status == S.REQUIRES_ACTION:
        settled = payment_cancel_expired(payment=settled)
    if settled.status in (S.UNKNOWN, S.REQUIRES_ACTION) and settled.updated == payment.updated:
        # Nothing was written (the gateway could not be asked): ask again on the backoff.
        next_at = timezone.now() + timedelta(seconds=settle_delay(settle_count=payment.settle_count))
        Payment.objects.filter(pk=payment_id, status=settled.status).update(next_settle_at=next_at)
    return settled


class SettleRefused(Exception):
    """Why an operator's settlement cannot be applied; the message is shown to them."""


def payment_intent_read(*, payment: Payment, gateway_id: str) -> Outcome:
    """What the gateway's intent `gateway_id` would make of this payment, read fresh, for an
    operator about to settle it by hand. Raises SettleRefused when it cannot be used."""
    if payment.status not in SETTLED_BY_ASKING:
        raise SettleRefused(f"A {payment.status} payment is settled already.")
    if not gateway_id:
        raise SettleRefused("Give the gateway's id of the intent (pi_…), from its dashboard.")
    db_connection_release()
    result = get_gateway().retrieve_payment_intent(gateway_id)
    if result.outcome == "not_found":
        raise SettleRefused(f"The gateway holds no intent {gateway_id}.")
    if not result.ok:
        raise SettleRefused(f"The gateway could not be asked ({result.outcome}); try again shortly.")
    owner = (result.data.get("metadata") or {}).get("payment_id")
    if owner not in (None, payment.id):
        raise SettleRefused(f"Intent {gateway_id} belongs to payment {owner}, not to this one.")
    if payment.gateway_id and payment.gateway_id != gateway_id:
        raise SettleRefused(f"This payment's intent is {payment.gateway_id}.")
    return intent_outcome(result.data)


def payment_settle_by_hand(*, payment_id: str, gateway_id: str) -> Payment:
    """An operator settles a payment to what the gateway holds now (read again at this moment,
    not what they were shown a minute ago). The console records who did it and their note."""
    payment = Payment.objects.get(pk=payment_id)
    outcome = payment_intent_read(payment=payment, gateway_id=gateway_id)
    if outcome.status == S.UNKNOWN:
        raise SettleRefused("The gateway has not settled this payment either; wait for it.")
    return payment_outcome_write(payment_id, outcome, attempts=[], operation="retrieve", only_from=SETTLED_BY_ASKING)


def payment_claim_free_in(*, payment: Payment) -> float:
    """s until a send's claim on this processing payment goes stale and may be taken over."""
    return max(0.0, settings.PAYMENT_CLAIM_STALE_AFTER - (timezone.now() - payment.updated).total_seconds())


def payment_settle_due(*, limit: int = 500) -> dict[str, int]:
    """The sweep: queue every payment and refund whose settlement is due; fail never-sent stale ones."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER)
    due = list(
        Payment.objects.filter(
            Q(status__in=[S.UNKNOWN, S.REQUIRES_ACTION], next_settle_at__lte=now)
            | Q(status=S.PROCESSING, updated__lt=stale)
        ).exclude(failure_code="settle_manually").values_list("id", flat=True)[:limit]
    )
    for payment_id in due:
        payment_settle_schedule(payment_id, 0)
    refunds_queued = refunds.refund_settle_due(limit=limit)
    expired = Payment.objects.filter(
        status=S.PENDING, created__lt=now - timedelta(seconds=settings.PAYMENT_PENDING_EXPIRY)
    ).update(status=S.FAILED, failure_code="abandoned",
             failure_message="Never reached the gateway before the retry window closed.", updated=now)
    return {"queued": len(due), "refunds_queued": refunds_queued, "expired": expired}
