"""Writes for gateway events: receive (verify, store first, queue), process (ask the gateway
through the payment's or refund's reconciliation), and queue again."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DataError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments.models import GatewayEvent, GatewayEventStatus
from payments.services import refunds as refund_services
from payments.services.settlement import payment_reconcile
from payments.webhooks import selectors
from payments.webhooks.refusals import refusal_count
from payments.webhooks.signature import SignatureRefused, signature_verify
from payments.webhooks.tasks import gateway_event_process_task

logger = logging.getLogger(__name__)

E = GatewayEventStatus
# An event left in received this long was probably never queued (the broker was away): the sweep queues it.
RECEIVED_GRACE = timedelta(seconds=60)
REQUEUEABLE = frozenset({E.RECEIVED, E.FAILED, E.IGNORED})


class WebhooksDisabled(Exception):
    """No signing secret is configured: nothing can be verified, so nothing is accepted."""


class DeliveryRefused(SignatureRefused):
    """Not an event we can take; the reason code goes into the 400."""


@dataclass(frozen=True)
class Receipt:
    pk: int
    event_id: str
    duplicate: bool


def delivery_refused(*, code: str, message: str) -> DeliveryRefused:
    """Counts and logs a refused delivery; returns the exception that answers it with a 400."""
    refusal_count(code=code)
    # The reason only: never the body, the header or the secret.
    logger.warning("gateway event refused: %s", code, extra={"category": "gateway_event_refused", "reason": code})
    return DeliveryRefused(code, message)


def _parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise delivery_refused(code="payload_invalid", message="The body is not JSON.") from None
    ok = (isinstance(event, dict) and isinstance(event.get("id"), str) and 0 < len(event["id"]) <= 255
          and isinstance(event.get("type"), str) and 0 < len(event["type"]) <= 100
          and isinstance(event.get("data"), dict) and isinstance(event["data"].get("object"), dict))
    if not ok:
        raise delivery_refused(code="payload_invalid", message="The body is not an event (id, type, data.object).")
    return event


def _gateway_created(event: dict[str, Any]) -> datetime | None:
    created = event.get("created")
    if isinstance(created, int) and not isinstance(created, bool) and 0 < created < 2**32:
        return datetime.fromtimestamp(created, tz=UTC)
    return None


_INSERT = """
INSERT INTO payments_gatewayevent
    (event_id, type, object_id, payload, gateway_created, received_at, status, action, error, attempts)
VALUES (%s, %s, %s, %s::jsonb, %s, %s, 'received', '', '', 0)
ON CONFLICT (event_id) DO NOTHING
RETURNING id
"""


def gateway_event_receive(*, payload: bytes, signature: str | None) -> Receipt:
    """Stores an authentic event once and queues its processing after commit; a repeat
    delivery stores nothing. WebhooksDisabled without a secret; DeliveryRefused (counted,
    nothing stored) for anything that is not the gateway's event."""
    secret = settings.PAYMENT_GATEWAY_WEBHOOK_SECRET
    if not secret:
        raise WebhooksDisabled()
    try:
        signature_verify(header=signature, payload=payload, secret=secret, now=time.time())
    except SignatureRefused as refused:
        raise delivery_refused(code=refused.code, message=refused.message) from None
    event = _parse_event(payload)
    event_id, event_type = event["id"], event["type"]
    object_id = str(event["data"]["object"].get("id") or "")[:255]
    try:
        with transaction.atomic():
            # One statement decides: a concurrent second delivery waits on the unique index and
            # then inserts nothing. Reading first would let both see no row, and the second
            # delivery would end in an error the gateway retries.
            with connection.cursor() as cursor:
                cursor.execute(_INSERT, [event_id, event_type, object_id, json.dumps(event), _gateway_created(event),
                                         timezone.now()])
                row = cursor.fetchone()
            if row is not None:
                transaction.on_commit(partial(_queue, row[0]))
    except DataError:
        # What JSON allows and PostgreSQL's jsonb does not (a \u0000 in a string).
        raise delivery_refused(code="payload_invalid", message="The event cannot be stored.") from None
    if row is not None:
        logger.info("gateway event received", extra={"category": "gateway_event_received", "event_id": event_id,
                                                     "event_type": event_type, "object_id": object_id})
        return Receipt(pk=row[0], event_id=event_id, duplicate=False)
    pk, status = GatewayEvent.objects.filter(event_id=event_id).values_list("pk", "status").get()
    logger.info("gateway event received again", extra={"category": "gateway_event_duplicate", "event_id": event_id,
                                                       "event_type": event_type, "status": status})
    if status == E.RECEIVED:
        _queue(pk)  # the first delivery's task may never have reached the broker
    return Receipt(pk=pk, event_id=event_id, duplicate=True)


def _queue(pk: int) -> None:

    try:
        # One try, bounded by the broker's socket timeouts: the gateway is waiting for our
        # answer and the event is stored; the sweep queues what did not get through.
        gateway_event_process_task.apply_async((pk,), retry=False)
    except Exception:  # noqa: BLE001 - stored is what matters; the sweep queues it later
        logger.warning("could not queue a gateway event", extra={"category": "gateway_event_queue_error",
                                                                 "gateway_event": pk})


def gateway_event_queue_due(*, limit: int = 500) -> int:
    """Queues events never taken by a worker and those whose worker went away mid-way."""
    now = timezone.now()
    due = selectors.gateway_events_due(received_before=now - RECEIVED_GRACE,
                                       claimed_before=now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER),
                                       limit=limit)
    for pk in due:
        _queue(pk)
    return len(due)


def gateway_event_requeue(*, pks: list[int]) -> list[GatewayEvent]:
    """Ops' "process again": failed, ignored or never-taken events go back to received and
    through the same task; processed ones and those being processed are left alone."""
    with transaction.atomic():
        events = list(GatewayEvent.objects.select_for_update().filter(pk__in=pks, status__in=REQUEUEABLE))
        GatewayEvent.objects.filter(pk__in=[e.pk for e in events]).update(status=E.RECEIVED, error="",
                                                                          claimed_at=None)
        for event in events:
            transaction.on_commit(partial(_queue, event.pk))
    return events


def _claim(pk: int) -> datetime | None:
    """Takes the event for this worker; None when it is done or another worker has it."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER)
    taken = (GatewayEvent.objects.filter(pk=pk)
             .filter(Q(status=E.RECEIVED) | Q(status=E.PROCESSING, claimed_at__lt=stale))
             .update(status=E.PROCESSING, claimed_at=now, attempts=F("attempts") + 1))
    return now if taken else None


def gateway_event_process(*, pk: int) -> GatewayEvent | None:
    """Applies the event once: asks the gateway for its object's state through our payment's
    or refund's reconciliation, and records what came of it. None if it was not ours to take."""
    claimed_at = _claim(pk)
    if claimed_at is None:
        return None
    event = GatewayEvent.objects.get(pk=pk)
    error = ""
    try:
        status, action = _dispatch(event)
    except Exception as exc:  # noqa: BLE001 - recorded on the event for ops, who process it again
        status, action, error = E.FAILED, "", f"{type(exc).__name__}: {exc}"[:500]
        logger.exception("gateway event failed", extra={"category": "gateway_event_failed",
                                                        "event_id": event.event_id, "event_type": event.type})
    done = GatewayEvent.objects.filter(pk=pk, status=E.PROCESSING, claimed_at=claimed_at).update(
        status=status, action=action[:500], error=error, processed_at=timezone.now())
    if done and status != E.FAILED:
        logger.info("gateway event %s", status, extra={
            "category": "gateway_event_processed", "event_id": event.event_id, "event_type": event.type,
            "status": status, "action": action})
    event.refresh_from_db()
    return event


def _dispatch(event: GatewayEvent) -> tuple[str, str]:
    obj = event.payload["data"]["object"]
    if event.type.startswith("payment_intent."):
        return _payment_intent_event(obj)
    if event.type == "charge.refunded":
        return _charge_refunded_event(obj)
    if event.type.startswith("refund.") or event.type == "charge.refund.updated":
        return _refunds_event([obj])
    return E.IGNORED, f"{event.type}: not an event we act on"


def _metadata(obj: dict[str, Any], key: str) -> str | None:
    value = (obj.get("metadata") or {}).get(key) if isinstance(obj.get("metadata"), dict) else None
    return value if isinstance(value, str) and value else None


def _payment_intent_event(intent: dict[str, Any]) -> tuple[str, str]:
    intent_id = str(intent.get("id") or "")
    payment = selectors.payment_for_intent(intent_id=intent_id, payment_id=_metadata(intent, "payment_id"))
    if payment is None:
        return E.IGNORED, f"unknown intent {intent_id}: none of our payments"
    # The event says what was true when it was sent; events come late, twice and out of order,
    # so the gateway is asked for the intent as it is now, and a final payment stays final.
    after = payment_reconcile(payment_id=payment.id, gateway_id=intent_id)
    return E.PROCESSED, f"payment {payment.id}: {payment.status} -> {after.status}"


def _charge_refunded_event(charge: dict[str, Any]) -> tuple[str, str]:
    listed = (charge.get("refunds") or {}).get("data") if isinstance(charge.get("refunds"), dict) else None
    if listed:
        return _refunds_event([r for r in listed if isinstance(r, dict)])
    # Recent API versions no longer list the refunds on the charge: every unfinished refund of
    # the intent's payment is asked about.
    intent_id = charge.get("payment_intent")
    refunds = selectors.refunds_unfinished_for_intent(intent_id=intent_id) if isinstance(intent_id, str) else []
    if not refunds:
        return E.IGNORED, f"charge {charge.get('id')}: no unfinished refund of ours"
    return E.PROCESSED, "; ".join(_refund_reconciled(refund.id, refund.status) for refund in refunds)


def _refunds_event(gateway_refunds: list[dict[str, Any]]) -> tuple[str, str]:
    done = []
    for gateway_refund in gateway_refunds:
        refund = selectors.refund_for_gateway_refund(gateway_refund_id=str(gateway_refund.get("id") or ""),
                                                     refund_id=_metadata(gateway_refund, "refund_id"))
        if refund is not None:
            done.append(_refund_reconciled(refund.id, refund.status))
    if not done:
        ids = ", ".join(str(r.get("id")) for r in gateway_refunds)
        return E.IGNORED, f"unknown refund {ids}: none of our refunds"
    return E.PROCESSED, "; ".join(done)


def _refund_reconciled(refund_id: str, before: str) -> str:
    after = refund_services.refund_reconcile(refund_id=refund_id)
    return f"refund {refund_id}: {before} -> {after.status}"
