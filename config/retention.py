"""Batched deletes for retention: tables that grow with traffic shed their old rows a batch at
a time, each batch its own short statement, so pruning never holds long locks or a long
transaction that would stall payments or vacuum."""

from __future__ import annotations

from django.db.models import QuerySet

PRUNE_BATCH = 5000  # rows per DELETE


def rows_delete_in_batches(*, rows: QuerySet, oldest_first_by: str, batch: int = PRUNE_BATCH) -> int:
    """Deletes every row of `rows`, `batch` at a time, oldest first; returns how many went."""
    model = rows.model
    deleted = 0
    while True:
        ids = rows.order_by(oldest_first_by).values("pk")[:batch]
        _, per_model = model.objects.filter(pk__in=ids).delete()
        count = per_model.get(model._meta.label, 0)
        deleted += count
        if count < batch:
            return deleted
