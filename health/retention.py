"""Retention of the health app's records beside the history (health_history_prune): alert
notifications and drill runs are kept as long as the snapshots they explain."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from config.retention import PRUNE_BATCH, rows_delete_in_batches
from health.models import ACTIVE_DRILL_STATUSES, AlertNotification, DrillRun

logger = logging.getLogger(__name__)


def _cutoff(now: datetime | None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.HEALTH_RETENTION_DAYS)


def alert_notifications_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Deletes notifications written before HEALTH_RETENTION_DAYS; their alerts stay."""
    deleted = rows_delete_in_batches(rows=AlertNotification.objects.filter(created_at__lt=_cutoff(now)),
                                     oldest_first_by="created_at", batch=batch)
    logger.info("alert notifications pruned: %s", deleted,
                extra={"category": "alert_notifications_pruned", "deleted": deleted})
    return deleted


def drill_runs_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Deletes finished drill runs started before HEALTH_RETENTION_DAYS; a queued or running one
    stays until its own deadline settles it, so the one-active-drill guard keeps its row."""
    rows = DrillRun.objects.filter(created_at__lt=_cutoff(now)).exclude(status__in=ACTIVE_DRILL_STATUSES)
    deleted = rows_delete_in_batches(rows=rows, oldest_first_by="created_at", batch=batch)
    logger.info("drill runs pruned: %s", deleted, extra={"category": "drill_runs_pruned", "deleted": deleted})
    return deleted
