"""Reads of payments for the API, the console and the health checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from payments.models import ApiClient, Payment, PaymentStatus, Refund
from payments.money import money_format

# Taken by the service and not yet known final: what an outage puts at risk.
IN_FLIGHT = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.UNKNOWN)


def payment_get(*, client: ApiClient, payment_id: str) -> Payment | None:
    return Payment.objects.filter(client=client, pk=payment_id).first()


def payment_list(*, client: ApiClient, status: str | None = None, reference: str | None = None,
                 starting_after: str | None = None, limit: int = 20) -> tuple[list[Payment], bool]:
    """Newest first, cursor-paginated by id (`starting_after`), so pages stay fast at depth."""
    qs: QuerySet[Payment] = Payment.objects.filter(client=client)
    if status:
        qs = qs.filter(status=status)
    if reference:
        qs = qs.filter(reference=reference)
    if starting_after:
        cursor = Payment.objects.filter(client=client, pk=starting_after).values("created", "id").first()
        if cursor is not None:
            qs = qs.filter(Q(created__lt=cursor["created"]) | Q(created=cursor["created"], id__lt=cursor["id"]))
    rows = list(qs.order_by("-created", "-id").prefetch_related("refunds")[: limit + 1])
    return rows[:limit], len(rows) > limit


def refund_get(*, client: ApiClient, refund_id: str) -> Refund | None:
    return Refund.objects.filter(client=client, pk=refund_id).first()


def payment_unknown_summary(*, older_than: timedelta | None = None) -> list[dict]:
    """Unsettled payments (unknown, or processing) per currency: count and amount."""
    qs = Payment.objects.filter(status__in=[PaymentStatus.UNKNOWN, PaymentStatus.PROCESSING])
    if older_than is not None:
        qs = qs.filter(created__lt=timezone.now() - older_than)
    rows = qs.values("currency").annotate(count=Count("id"), amount=Sum("amount")).order_by("currency")
    return [{"currency": r["currency"], "count": r["count"], "amount": r["amount"] or 0} for r in rows]


def refund_unknown_summary(*, older_than: timedelta | None = None) -> list[dict]:
    """Refunds whose outcome is unknown, per currency: count and amount."""
    qs = Refund.objects.filter(status="unknown")
    if older_than is not None:
        qs = qs.filter(created__lt=timezone.now() - older_than)
    rows = qs.values("payment__currency").annotate(count=Count("id"), amount=Sum("amount")).order_by(
        "payment__currency")
    return [{"currency": r["payment__currency"], "count": r["count"], "amount": r["amount"] or 0} for r in rows]


def with_display(rows: list[dict]) -> list[dict]:
    """Summary rows with their amount as people read it (the currency's own decimals)."""
    return [{**row, "display": money_format(amount=row["amount"], currency=row["currency"])} for row in rows]


def idempotency_mismatch_count() -> int:
    """Payments the gateway answered 'same key, other parameters': our bug, and possibly charged."""
    return Payment.objects.filter(status="unknown", failure_code="idempotency_mismatch").count()


def payment_unfinished_summary(*, since: datetime) -> dict:
    """Payments created since `since` that have not reached the gateway's answer: still pending
    (shed, never sent), unknown or processing. Count and amount per currency."""
    rows = (Payment.objects.filter(created__gte=since, status__in=IN_FLIGHT)
            .values("currency").annotate(count=Count("id"), amount=Sum("amount")))
    return {"count": sum(r["count"] for r in rows), "amounts": {r["currency"]: r["amount"] or 0 for r in rows}}


def payment_in_flight_summary() -> dict:
    rows = (Payment.objects.filter(status__in=IN_FLIGHT)
            .values("currency").annotate(count=Count("id"), amount=Sum("amount")))
    return {"count": sum(r["count"] for r in rows), "amounts": {r["currency"]: r["amount"] or 0 for r in rows}}
