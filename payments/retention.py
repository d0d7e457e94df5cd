"""Retention of idempotency records: each holds a request's answer for replay, one per request,
so the table grows with traffic. Like Stripe, a key is kept 24 hours past its lease; after that
a retry with the same key is a new request."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from config.retention import PRUNE_BATCH, rows_delete_in_batches
from payments.models import IdempotencyRecord

logger = logging.getLogger(__name__)

REPLAY_WINDOW = timedelta(hours=24)


def idempotency_records_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Deletes records created before the replay window whose lease (if any) ended before it too;
    a record still leased to a request that runs is never taken from under it."""
    cutoff = (now or timezone.now()) - REPLAY_WINDOW
    rows = IdempotencyRecord.objects.filter(Q(locked_until__isnull=True) | Q(locked_until__lt=cutoff),
                                            created__lt=cutoff)
    deleted = rows_delete_in_batches(rows=rows, oldest_first_by="created", batch=batch)
    logger.info("idempotency records pruned: %s", deleted,
                extra={"category": "idempotency_pruned", "deleted": deleted})
    return deleted
