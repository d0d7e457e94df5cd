"""Settlement of payments whose outcome is unknown. Tasks take ids and re-check state first,
so a second delivery (acks_late after a worker died) is harmless."""

from __future__ import annotations

from celery import shared_task

from payments import services


@shared_task(name="payments.tasks.payment_settle_task", ignore_result=True, acks_late=True)
def payment_settle_task(payment_id: str) -> None:
    services.payment_settle(payment_id=payment_id)


@shared_task(name="payments.tasks.payment_settle_sweep", ignore_result=True)
def payment_settle_sweep() -> dict[str, int]:
    return services.payment_settle_due()
