"""Writes: API keys, idempotency, payments and refunds at the gateway, settlement."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments import statements
from payments.gateway import GatewayResult, get_gateway
from payments.ids import new_id
from payments.models import (
    PAYMENT_TRANSITIONS,
    ApiClient,
    IdempotencyRecord,
    Payment,
    PaymentAttempt,
    Refund,
)

logger = logging.getLogger(__name__)

# Settlement tasks queued from a payment's request go out on a thread of their own, so that a
# Redis that hangs (kombu's publish waits its socket timeout, 2 s, three times) never holds
# the answer past the payment's deadline; at most this many at once, the sweep does the rest.
SETTLE_PUBLISHERS = 8
_settle_publishers = threading.BoundedSemaphore(SETTLE_PUBLISHERS)

KEY_PREFIX = "pok_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key
RESEND_WINDOW = timedelta(hours=23)  # the gateway keeps idempotency keys for 24 h


class InvalidTransition(Exception):
    pass


# --- API keys ------------------------------------------------------------------------------
def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_prefix(raw_key: str) -> str | None:
    """The public part of a key (pok_<prefix>_<secret>), or None if it is not shaped like one."""
    if not raw_key.startswith(KEY_PREFIX) or raw_key.count("_") < 2:
        return None
    return raw_key[len(KEY_PREFIX):].split("_", 1)[0]


def api_key_create(*, name: str, created_by: Any = None) -> tuple[ApiClient, str]:
    """Creates a client and returns its key: the only time the key is ever seen."""
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(name=name, prefix=prefix, key_hash=hash_key(raw_key), created_by=created_by)
    logger.info("api key created", extra={"category": "api_key_created", "client": name, "prefix": prefix})
    return client, raw_key


def api_key_rotate(*, client: ApiClient) -> str:
    """Gives the client a new key and returns it (the only time it is seen); the old key stops
    working at once in every process (the save announces the change to the key caches)."""
    old_prefix = client.prefix
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    client.prefix, client.key_hash, client.is_active, client.revoked_at = prefix, hash_key(raw_key), True, None
    client.save(update_fields=["prefix", "key_hash", "is_active", "revoked_at"])
    logger.info("api key rotated", extra={"category": "api_key_rotated", "client": client.name,
                                          "old_prefix": old_prefix, "prefix": prefix})
    return raw_key


def api_key_revoke(*, client: ApiClient) -> None:
    client.is_active = False
    client.revoked_at = timezone.now()
    client.save(update_fields=["is_active", "revoked_at"])
    logger.info("api key revoked", extra={"category": "api_key_revoked", "client": client.name})


def api_client_authenticate(*, raw_key: str) -> ApiClient | None:
    """The key's client, read from PostgreSQL (the API reads it through payments.api.keycache)."""
    prefix = api_key_prefix(raw_key)
    return api_client_verify(prefix=prefix, key_hash=hash_key(raw_key)) if prefix is not None else None


def api_client_verify(*, prefix: str, key_hash: str) -> ApiClient | None:
    """The active client with this prefix if its stored hash is `key_hash`; notes its use."""
    client = statements.api_client_by_prefix(prefix)
    if client is None or not hmac.compare_digest(client.key_hash, key_hash):
        return None
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        api_client_touch(client=client, now=now)
    return client


def api_client_touch(*, client: ApiClient, now: datetime) -> None:
    # An UPDATE, not save(): last use is not a change of the key (no post_save, no broadcast).
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    client.last_used_at = now


# --- Idempotency ---------------------------------------------------------------------------
@dataclass
class Claim:
    kind: str  # claimed, replay, mismatch, in_use
    record: IdempotencyRecord


def idempotency_claim(*, client: ApiClient, key: str, endpoint: str, request_hash: str,
                      open_first: Callable[[datetime], IdempotencyRecord] | None = None) -> Claim:
    """Take the key for this request, or say why not (replay its answer, mismatch, in use).

    `open_first(lease)` writes the request's resource together with a first claim and returns
    the claim (see `payment_open`): one commit for both, and a key that is taken always has
    its resource. It raises IntegrityError when the key exists, like the plain claim."""
    lease = timezone.now() + timedelta(seconds=settings.PAYMENT_DEADLINE + 5)
    try:
        if open_first is not None:
            return Claim("claimed", open_first(lease))
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(client=client, key=key, endpoint=endpoint,
                                                      request_hash=request_hash, locked_until=lease)
        return Claim("claimed", record)
    except IntegrityError:
        existing = IdempotencyRecord.objects.filter(client=client, key=key).first()
        if existing is None:  # the conflict was the resource's own, not the key's
            raise
        record = existing
    if record.endpoint != endpoint or record.request_hash != request_hash:
        return Claim("mismatch", record)
    if record.response_status is not None:
        return Claim("replay", record)
    now = timezone.now()
    taken = IdempotencyRecord.objects.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lt=now), pk=record.pk, response_status__isnull=True
    ).update(locked_until=lease)
    record.refresh_from_db()
    if taken:
        return Claim("claimed", record)
    return Claim("replay" if record.response_status is not None else "in_use", record)


def idempotency_release(*, record: IdempotencyRecord, status: int | None = None, body: dict | None = None) -> None:
    """Ends the lease; a final answer (2xx, 4xx) is kept and replayed to every repeat."""
    statements.idempotency_release(record_id=record.pk, status=status, body=body)


# --- Payments ------------------------------------------------------------------------------
def _release_db_connection() -> None:
    # Never hold a pooled database connection across a gateway call of up to the deadline:
    # a slow gateway would otherwise exhaust the database pool (the incident's second act).
    if not connection.in_atomic_block:
        connection.close()


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
    payment, record = statements.payment_open(
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
                   .filter(Q(status__in=["pending", "unknown"]) | Q(status="processing", updated__lt=stale))
                   .only("status").first())
        if payment is None:
            return None
        Payment.objects.filter(pk=payment_id).update(status="processing", updated=now)
        return payment.status


# What a request that opened a payment answers for a payment: (HTTP status, body, final).
Answer = Callable[[Payment], tuple[int, dict[str, Any], bool]]


def payment_submit(*, payment_id: str, opened: Payment | None = None,
                   release: tuple[IdempotencyRecord, Answer] | None = None) -> Payment:
    """Sends the payment to the gateway (again), with the same idempotency key every time.
    `opened` is a payment `payment_open` just created, already claimed for this send; with
    `release`, its idempotency claim ends with the first answer, in the same statement."""
    if opened is not None and opened.pk == payment_id:
        payment, previous = opened, "pending"
    else:
        previous = _claim_for_gateway(payment_id)
        if previous is None:
            return Payment.objects.get(pk=payment_id)
        payment = Payment.objects.get(pk=payment_id)
    if timezone.now() - payment.created > RESEND_WINDOW and payment.attempt_count:
        # Past the gateway's idempotency window a re-send could charge twice: stop, ask ops.
        return _apply(payment_id, GatewayResult(outcome="bad_response", sent=True,
                                                error_code="settle_manually",
                                                error_message="past the gateway's idempotency window"),
                      previous=previous)
    _release_db_connection()
    metadata = {**payment.metadata, "payment_id": payment.id}
    if payment.reference:
        metadata["reference"] = payment.reference
    result = get_gateway().create_payment_intent(
        idempotency_key=payment.gateway_idempotency_key, amount=payment.amount, currency=payment.currency,
        payment_method=payment.payment_method, metadata=metadata,
    )
    if opened is not None:
        applied = _apply_opened(payment, result, release)
        if applied is not None:
            return applied
    return _apply(payment_id, result, previous=previous)


def _status_from_intent(data: dict[str, Any]) -> tuple[str, str, str]:
    status = data.get("status")
    error = data.get("last_payment_error") or {}
    if status == "succeeded":
        return "succeeded", "", ""
    if status in {"requires_action", "requires_confirmation"}:
        return "requires_action", "", ""
    if status in {"requires_payment_method", "canceled"}:
        return "failed", str(error.get("decline_code") or error.get("code") or status), str(error.get("message") or "")
    return "unknown", "", ""  # processing at the gateway: ask again later


def _apply_opened(payment: Payment, result: GatewayResult,
                  release: tuple[IdempotencyRecord, Answer] | None = None) -> Payment | None:
    """The first answer for a payment this request opened: one statement writes it, its
    attempts and (with `release`) the idempotency record's answer, instead of a locked read, a
    save and two more commits. Only the holder of the claim writes a processing payment with
    no attempts yet, so the condition is the lock. None for an unknown outcome (settlement is
    scheduled by `_apply`) or when the payment moved meanwhile; the caller then uses `_apply`
    and the claim is released as usual."""
    new_status, code, message = _outcome_status(result)
    if new_status == "unknown":
        return None
    now = timezone.now()
    fields: dict[str, Any] = {"status": new_status, "failure_code": code[:100], "failure_message": message[:500],
                              "attempt_count": len(result.attempts), "updated": now}
    if result.ok and result.data.get("id"):
        fields["gateway_id"] = result.data["id"]
    if new_status in {"succeeded", "failed", "requires_action"}:
        fields["next_settle_at"] = None
    before = {name: getattr(payment, name) for name in fields}
    for name, value in fields.items():
        setattr(payment, name, value)
    kept = None
    if release is not None:
        record, answer = release
        status, body, final = answer(payment)
        kept = (record.pk, status if final else None, body if final else None)
    if not statements.payment_apply_first(payment_id=payment.pk, fields=fields, attempts=result.attempts,
                                          release=kept):
        for name, value in before.items():
            setattr(payment, name, value)
        return None
    if release is not None:
        record.locked_until = None
        if final:
            record.response_status, record.response_body = status, body
    return payment


def _apply(payment_id: str, result: GatewayResult, *, previous: str) -> Payment:
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status != "processing":
            return payment
        new_status, code, message = _outcome_status(result)
        if new_status == "pending" and previous in {"unknown", "processing"}:
            # An earlier send may have reached the gateway: still unknown, never "not sent".
            new_status, code, message = "unknown", result.error_code or result.outcome, payment.failure_message
        fields = ["status", "failure_code", "failure_message", "attempt_count", "updated"]
        if result.ok and result.data.get("id"):
            payment.gateway_id = result.data["id"]
            fields.append("gateway_id")
        _transition(payment, new_status)
        payment.failure_code, payment.failure_message = code[:100], message[:500]
        base = payment.attempt_count
        PaymentAttempt.objects.bulk_create(
            PaymentAttempt(payment=payment, number=base + i, operation="create", started_at=a.started_at,
                           duration_ms=a.duration_ms, outcome=a.outcome, http_status=a.http_status,
                           gateway_request_id=a.request_id[:255], error=a.error[:255])
            for i, a in enumerate(result.attempts, start=1)
        )
        payment.attempt_count = base + len(result.attempts)
        if new_status == "unknown":
            delays = settings.PAYMENT_SETTLE_DELAYS
            delay = delays[min(payment.settle_count, len(delays) - 1)]
            payment.next_settle_at = timezone.now() + timedelta(seconds=delay)
            fields.append("next_settle_at")
            transaction.on_commit(lambda: _schedule_settle_off_thread(payment.id, delay))
            logger.warning("payment outcome unknown", extra={
                "category": "payment_unknown_outcome", "payment_id": payment.id,
                "idempotency_key": payment.gateway_idempotency_key, "outcome": result.outcome,
                "retry_in_s": delay})
        elif new_status in {"succeeded", "failed", "requires_action"}:
            payment.next_settle_at = None
            fields.append("next_settle_at")
        payment.save(update_fields=fields)
    return payment


def _outcome_status(result: GatewayResult) -> tuple[str, str, str]:
    if result.outcome == "circuit_open":
        return "pending", "circuit_open", result.error_message
    if not result.sent:
        return "pending", "gateway_unavailable", "The payment gateway could not be reached."
    if result.ok:
        return _status_from_intent(result.data)
    if result.outcome == "declined":
        intent = (result.data.get("error") or {}).get("payment_intent") or {}
        code = result.error_code or "declined"
        if intent.get("status") == "requires_action":
            return "requires_action", "", ""
        return "failed", code, result.error_message or "The gateway declined the payment."
    if result.error_code == "settle_manually":
        return "unknown", result.error_code, result.error_message
    return "unknown", result.outcome, "No usable answer from the gateway; the outcome is being settled."


def _transition(payment: Payment, new_status: str) -> None:
    if new_status != payment.status and new_status not in PAYMENT_TRANSITIONS[payment.status]:
        raise InvalidTransition(f"{payment.id}: {payment.status} -> {new_status}")
    payment.status = new_status


def _schedule_settle(payment_id: str, delay: int) -> None:
    from payments.tasks import payment_settle_task

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
            _schedule_settle(payment_id, delay)
        finally:
            _settle_publishers.release()

    threading.Thread(target=publish, name="settle-queue", daemon=True).start()


def payment_settle(*, payment_id: str) -> Payment:
    """Re-asks the gateway about an unknown or stale payment; backs off if still unknown."""
    payment = Payment.objects.get(pk=payment_id)
    if payment.status not in {"unknown", "processing"} or payment.failure_code == "settle_manually":
        return payment
    Payment.objects.filter(pk=payment_id).update(settle_count=F("settle_count") + 1)
    return payment_submit(payment_id=payment_id)


def payment_claim_free_in(*, payment: Payment) -> float:
    """s until a send's claim on this processing payment goes stale and may be taken over."""
    return max(0.0, settings.PAYMENT_CLAIM_STALE_AFTER - (timezone.now() - payment.updated).total_seconds())


def payment_settle_due(*, limit: int = 500) -> dict[str, int]:
    """The sweep: queue every payment whose settlement is due; fail never-sent stale ones."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER)
    due = list(
        Payment.objects.filter(
            Q(status="unknown", next_settle_at__lte=now) | Q(status="processing", updated__lt=stale)
        ).exclude(failure_code="settle_manually").values_list("id", flat=True)[:limit]
    )
    for payment_id in due:
        _schedule_settle(payment_id, 0)
    for refund_id in Refund.objects.filter(status="unknown").values_list("id", flat=True)[:limit]:
        refund_submit(refund_id=refund_id)
    expired = Payment.objects.filter(
        status="pending", created__lt=now - timedelta(seconds=settings.PAYMENT_PENDING_EXPIRY)
    ).update(status="failed", failure_code="abandoned",
             failure_message="Never reached the gateway before the retry window closed.", updated=now)
    return {"queued": len(due), "expired": expired}


# --- Refunds -------------------------------------------------------------------------------
class RefundRefused(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def refund_create(*, client: ApiClient, record: IdempotencyRecord, payment_id: str, amount: int | None) -> Refund:
    """Reserves the amount on the payment (so two refunds can never exceed it) and records it."""
    if record.resource_id:
        return Refund.objects.get(pk=record.resource_id)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id, client=client)
        if payment.status not in {"succeeded", "partially_refunded"}:
            raise RefundRefused("payment_not_refundable", f"A {payment.status} payment cannot be refunded.")
        left = payment.amount - payment.amount_refunded
        amount = left if amount is None else amount
        if amount > left:
            raise RefundRefused("amount_too_large", f"Only {left} is left to refund.", "amount")
        if amount <= 0:
            raise RefundRefused("amount_too_small", "Nothing is left to refund.", "amount")
        refund = Refund.objects.create(payment=payment, client=client, idempotency_key=record.key,
                                       request_hash=record.request_hash, amount=amount)
        payment.amount_refunded += amount
        payment.save(update_fields=["amount_refunded", "updated"])
        IdempotencyRecord.objects.filter(pk=record.pk).update(resource_id=refund.id)
    record.resource_id = refund.id
    return refund


def refund_submit(*, refund_id: str) -> Refund:
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.status not in {"pending", "unknown"}:
        return refund
    _release_db_connection()
    result = get_gateway().create_refund(
        idempotency_key=refund.gateway_idempotency_key, payment_intent=refund.payment.gateway_id or "",
        amount=refund.amount, metadata={"refund_id": refund.id, "payment_id": refund.payment_id},
    )
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        if refund.status not in {"pending", "unknown"}:
            return refund
        if result.ok:
            refund.status, refund.gateway_id = "succeeded", result.data.get("id")
            new = "refunded" if payment.amount_refunded >= payment.amount else "partially_refunded"
            _transition(payment, new)
            payment.save(update_fields=["status", "updated"])
        elif not result.sent:
            return refund  # nothing reached the gateway: stays pending, the client may retry
        elif result.outcome == "declined":
            refund.status = "failed"
            refund.failure_code = (result.error_code or result.outcome)[:100]
            refund.failure_message = result.error_message[:500]
            payment.amount_refunded -= refund.amount  # the reservation is given back
            payment.save(update_fields=["amount_refunded", "updated"])
        else:
            refund.status = "unknown"
            refund.failure_code = result.outcome
        refund.save()
    return refund
