"""Writes: API keys, idempotency, payments and refunds at the gateway, settlement."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from payments import statements
from payments.figures import record_payment_outcome
from payments.gateway import GatewayResult, get_gateway
from payments.gateway.client import Attempt
from payments.ids import new_id
from payments.models import (
    FINAL_STATUSES,
    PAYMENT_TRANSITIONS,
    SETTLED_BY_HAND,
    ApiClient,
    IdempotencyRecord,
    Payment,
    PaymentAttempt,
)
from payments.models import PaymentStatus as S
from payments.outcomes import Outcome, create_outcome, intent_outcome
from payments.tasks import payment_settle_task

logger = logging.getLogger(__name__)

# Settlement tasks queued from a payment's request go out on a thread of their own, so that a
# Redis that hangs (kombu's publish waits its socket timeout, 2 s, three times) never holds
# the answer past the payment's deadline; at most this many at once, the sweep does the rest.
SETTLE_PUBLISHERS = 8
_settle_publishers = threading.BoundedSemaphore(SETTLE_PUBLISHERS)

KEY_PREFIX = "pok_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key
RESEND_WINDOW = timedelta(hours=23)  # the gateway keeps idempotency keys for 24 h
# Statuses settlement works on: asked again until the gateway's answer is final.
SETTLED_BY_ASKING = SETTLED_BY_HAND


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
    # a slow gateway would otherwise exhaust the database pool.
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
                   .filter(Q(status__in=[S.PENDING, S.UNKNOWN]) | Q(status=S.PROCESSING, updated__lt=stale))
                   .only("status").first())
        if payment is None:
            return None
        Payment.objects.filter(pk=payment_id).update(status=S.PROCESSING, updated=now)
        return payment.status


# What a request that opened a payment answers for a payment: (HTTP status, body, final).
Answer = Callable[[Payment], tuple[int, dict[str, Any], bool]]


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
        return _apply(payment_id, outcome, attempts=[], operation="create", only_from={S.PROCESSING},
                      previous=previous)
    _release_db_connection()
    metadata = {**payment.metadata, "payment_id": payment.id}
    if payment.reference:
        metadata["reference"] = payment.reference
    result = get_gateway().create_payment_intent(
        idempotency_key=payment.gateway_idempotency_key, amount=payment.amount, currency=payment.currency,
        payment_method=payment.payment_method, metadata=metadata,
    )
    outcome = create_outcome(result, previous=previous)
    if opened is not None:
        applied = _apply_opened(payment, outcome, result, release)
        if applied is not None:
            return applied
    return _apply(payment_id, outcome, attempts=result.attempts, operation="create", only_from={S.PROCESSING},
                  previous=previous)


def _apply_opened(payment: Payment, outcome: Outcome, result: GatewayResult,
                  release: tuple[IdempotencyRecord, Answer] | None = None) -> Payment | None:
    """The first answer for a payment this request opened: one statement writes it, its
    attempts and (with `release`) the idempotency record's answer, instead of a locked read, a
    save and two more commits. Only the holder of the claim writes a processing payment with
    no attempts yet, so the condition is the lock. None when the outcome needs follow-up
    (settlement, the customer's authentication: `_apply` schedules it) or when the payment
    moved meanwhile; the caller then uses `_apply` and the claim is released as usual."""
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
    _count_outcome(outcome, previous=S.PENDING)
    return payment


def _apply(payment_id: str, outcome: Outcome, *, attempts: Sequence[Attempt], operation: str,
           only_from: Collection[str], previous: str | None = None) -> Payment:
    """Writes what the gateway said, under the payment's lock, if the payment is still in one of
    `only_from` (another path may have settled it meanwhile: then it is left as it is).
    `previous` is the status before a send claimed the payment (a read claims nothing)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status not in only_from:
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
    `statements.payment_apply_first` writes in one statement with the same fields). A move
    the lifecycle does not allow, such as a final state going backwards, is refused and logged."""
    if outcome.status != payment.status and outcome.status not in PAYMENT_TRANSITIONS[payment.status]:
        logger.warning("payment outcome refused: %s -> %s", payment.status, outcome.status, extra={
            "category": "payment_transition_refused", "payment_id": payment.id,
            "from_status": payment.status, "to_status": outcome.status, "operation": operation})
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
    base = payment.attempt_count
    PaymentAttempt.objects.bulk_create(
        PaymentAttempt(payment=payment, number=base + i, operation=operation, started_at=a.started_at,
                       duration_ms=a.duration_ms, outcome=a.outcome, http_status=a.http_status,
                       gateway_request_id=a.request_id[:255], error=a.error[:255])
        for i, a in enumerate(attempts, start=1)
    )
    payment.attempt_count = base + len(attempts)
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


def settle_delay(*, settle_count: int) -> int:
    """s until the next settlement of something asked `settle_count` times already."""
    delays = settings.PAYMENT_SETTLE_DELAYS
    return delays[min(settle_count, len(delays) - 1)]


def _schedule_settle(payment_id: str, delay: int) -> None:

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


def payment_reconcile(*, payment_id: str, gateway_id: str | None = None) -> Payment:
    """Asks the gateway for the payment's intent and moves the payment to what it says.
    `gateway_id` serves when the payment has none yet (its answer was lost) and the intent's
    metadata names this payment. Never moves a final payment backwards; a gateway that cannot
    be asked now leaves the payment as it is."""
    payment = Payment.objects.get(pk=payment_id)
    intent_id = payment.gateway_id or gateway_id
    if payment.status in FINAL_STATUSES or payment.status == S.PENDING or not intent_id:
        return payment
    _release_db_connection()
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
    return _apply(payment_id, outcome, attempts=result.attempts, operation="retrieve",
                  only_from={S.UNKNOWN, S.PROCESSING, S.REQUIRES_ACTION})


def payment_cancel_expired(*, payment: Payment) -> Payment:
    """A payment whose customer never authenticated within PAYMENT_ACTION_EXPIRY: its intent is
    canceled at the gateway (so it cannot be completed later) and the payment follows it."""
    if payment.status != S.REQUIRES_ACTION or not payment.gateway_id:
        return payment
    if timezone.now() - payment.created < timedelta(seconds=settings.PAYMENT_ACTION_EXPIRY):
        return payment
    _release_db_connection()
    result = get_gateway().cancel_payment_intent(gateway_id=payment.gateway_id,
                                                 idempotency_key=f"{payment.gateway_idempotency_key}-cancel")
    if not result.ok:
        # Most often the customer finished just now and the intent can no longer be canceled:
        # what the gateway holds decides.
        return payment_reconcile(payment_id=payment.id)
    return _apply(payment.id, intent_outcome(result.data), attempts=result.attempts, operation="cancel",
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
    _release_db_connection()
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
    return _apply(payment_id, outcome, attempts=[], operation="retrieve", only_from=SETTLED_BY_ASKING)


def payment_claim_free_in(*, payment: Payment) -> float:
    """s until a send's claim on this processing payment goes stale and may be taken over."""
    return max(0.0, settings.PAYMENT_CLAIM_STALE_AFTER - (timezone.now() - payment.updated).total_seconds())


def payment_settle_due(*, limit: int = 500) -> dict[str, int]:
    """The sweep: queue every payment and refund whose settlement is due; fail never-sent stale ones."""
    from payments import refunds

    now = timezone.now()
    stale = now - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER)
    due = list(
        Payment.objects.filter(
            Q(status__in=[S.UNKNOWN, S.REQUIRES_ACTION], next_settle_at__lte=now)
            | Q(status=S.PROCESSING, updated__lt=stale)
        ).exclude(failure_code="settle_manually").values_list("id", flat=True)[:limit]
    )
    for payment_id in due:
        _schedule_settle(payment_id, 0)
    refunds_queued = refunds.refund_settle_due(limit=limit)
    expired = Payment.objects.filter(
        status=S.PENDING, created__lt=now - timedelta(seconds=settings.PAYMENT_PENDING_EXPIRY)
    ).update(status=S.FAILED, failure_code="abandoned",
             failure_message="Never reached the gateway before the retry window closed.", updated=now)
    return {"queued": len(due), "refunds_queued": refunds_queued, "expired": expired}
