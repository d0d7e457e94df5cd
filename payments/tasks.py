"""Settlement of payments whose outcome is unknown. Tasks take ids and re-check state first,
so a second delivery (acks_late after a worker died) is harmless."""

from __future__ import annotations

from celery import shared_task

from config import ticks
from payments.models import PaymentStatus

CLAIM_RETRIES = 3
SWEEP_SCOPE = "payments:sweep"  # its claims: payops:payments:sweep:tick:<epoch s>
PRUNE_SCOPE = "payments:prune"


@shared_task(name="payments.tasks.payment_settle_task", bind=True, ignore_result=True, acks_late=True,
             max_retries=CLAIM_RETRIES)
def payment_settle_task(self, payment_id: str) -> None:
    from payments.services.settlement import payment_claim_free_in, payment_settle

    payment = payment_settle(payment_id=payment_id)
    if payment.status == PaymentStatus.PROCESSING:
        # Another send holds the claim, or a worker killed mid-call left it (this may be that
        # very message, redelivered): look again once the claim is stale. The sweep covers the rest.
        raise self.retry(countdown=payment_claim_free_in(payment=payment) + 1)


@shared_task(name="payments.tasks.refund_settle_task", ignore_result=True, acks_late=True)
def refund_settle_task(refund_id: str) -> None:
    from payments.services.refunds import refund_settle

    refund_settle(refund_id=refund_id)


@shared_task(name="payments.tasks.payment_settle_sweep", bind=True, ignore_result=True)
def payment_settle_sweep(self) -> dict[str, int]:
    """Beat's sweep runs once per tick (a second beat's copy is skipped); a sweep sent by hand always runs."""
    if not ticks.once_per_tick(self.request, scope=SWEEP_SCOPE):
        return {"queued": 0, "expired": 0}
    from payments.services.settlement import payment_settle_due

    return payment_settle_due()


@shared_task(name="payments.tasks.idempotency_records_prune", bind=True, ignore_result=True)
def idempotency_records_prune(self) -> int:
    """Daily: idempotency records past their replay window, once per tick."""
    if not ticks.once_per_tick(self.request, scope=PRUNE_SCOPE):
        return 0
    from payments import retention

    return retention.idempotency_records_prune()
