"""Processing of stored gateway events. Tasks take the event's primary key; the event's
status is the claim, so a second delivery of a task (acks_late) finds it taken or done."""

from __future__ import annotations

from celery import shared_task

from config import ticks

SWEEP_SCOPE = "payments:gateway-events"  # its claims: payops:payments:gateway-events:tick:<epoch s>


@shared_task(name="payments.webhooks.tasks.gateway_event_process_task", ignore_result=True, acks_late=True)
def gateway_event_process_task(pk: int) -> None:
    from payments.webhooks.services import gateway_event_process

    gateway_event_process(pk=pk)


@shared_task(name="payments.webhooks.tasks.gateway_event_sweep", bind=True, ignore_result=True)
def gateway_event_sweep(self) -> int:
    """Beat's sweep runs once per tick (a second beat's copy is skipped); one sent by hand always runs."""
    if not ticks.once_per_tick(self.request, scope=SWEEP_SCOPE):
        return 0
    from payments.webhooks.services import gateway_event_queue_due

    return gateway_event_queue_due()
