"""Idempotency keys: one request owns a key at a time; a repeat replays, a mismatch is refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from payments.models import (
    ApiClient,
    IdempotencyRecord,
)
from payments.services import create_path_sql

RESEND_WINDOW = timedelta(hours=23)  # the gateway keeps idempotency keys for 24 h


# --- Idempotency ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiAnswer:
    """What a request answers: its HTTP status and JSON body, whether it is final (then kept on
    the key's record and replayed to every repeat), and for a 503 the seconds to wait."""

    status: int
    body: dict[str, Any]
    final: bool
    retry_after: float | None = None


# What a request learns of its key: it owns it (claimed), the first request's answer is
# replayed (replay), the key came with other parameters (mismatch) or is still being served.
ClaimKind = Literal["claimed", "replay", "mismatch", "in_use"]


@dataclass
class Claim:
    kind: ClaimKind
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
    create_path_sql.idempotency_release(record_id=record.pk, status=status, body=body)
