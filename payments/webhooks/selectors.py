"""Reads for gateway events: whose payment or refund an event is about, and what is left to do."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from payments.models import GatewayEvent, GatewayEventStatus, Payment, Refund, RefundStatus


def payment_for_intent(*, intent_id: str, payment_id: str | None) -> Payment | None:
    """Our payment of this intent: by the gateway id we stored, else by the payment id we put
    in the intent's metadata (the gateway's answer was lost before we stored its id). A
    payment already tied to another intent is not this one's."""
    payment = Payment.objects.filter(gateway_id=intent_id).first()
    if payment is None and payment_id:
        payment = (Payment.objects.filter(pk=payment_id)
                   .filter(Q(gateway_id__isnull=True) | Q(gateway_id=intent_id)).first())
    return payment


def refund_for_gateway_refund(*, gateway_refund_id: str, refund_id: str | None) -> Refund | None:
    """Our refund of this gateway refund, found the same way as a payment."""
    refund = Refund.objects.filter(gateway_id=gateway_refund_id).first()
    if refund is None and refund_id:
        refund = (Refund.objects.filter(pk=refund_id)
                  .filter(Q(gateway_id__isnull=True) | Q(gateway_id=gateway_refund_id)).first())
    return refund


def refunds_unfinished_for_intent(*, intent_id: str) -> list[Refund]:
    """Refunds of the intent's payment the gateway has not confirmed or refused yet."""
    unfinished = [RefundStatus.PENDING, RefundStatus.UNKNOWN]
    return list(Refund.objects.filter(payment__gateway_id=intent_id, status__in=unfinished))


def gateway_events_due(*, received_before: datetime, claimed_before: datetime, limit: int) -> list[int]:
    """Events no worker has taken since they were stored, or whose worker went away mid-way."""
    return list(
        GatewayEvent.objects.filter(Q(status=GatewayEventStatus.RECEIVED, received_at__lt=received_before)
                                    | Q(status=GatewayEventStatus.PROCESSING, claimed_at__lt=claimed_before))
        .order_by("received_at").values_list("pk", flat=True)[:limit]
    )


def gateway_event_failed_count() -> int:
    return GatewayEvent.objects.filter(status=GatewayEventStatus.FAILED).count()


def gateway_event_types_seen(*, since: datetime) -> list[str]:
    types = (GatewayEvent.objects.filter(received_at__gte=since).order_by().values_list("type", flat=True)
             .distinct())
    return sorted(types)
