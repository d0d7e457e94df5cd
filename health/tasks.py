"""Celery tasks of the health app: they parse arguments and call one service."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import shared_task
from django.conf import settings

from config import ticks

logger = logging.getLogger(__name__)

NOTIFY_RETRIES = 5


@shared_task(name="health.tasks.health_check_run", bind=True, ignore_result=True)
def health_check_run(self, interval: int | None = None) -> None:
    """Scheduled by beat every HEALTH_CHECK_INTERVAL seconds (`interval` is the beat's). Runs the
    tick beat sent it for, even when redelivered later; a copy of a tick already taken (a second
    beat) is skipped by the service."""
    from health.services import runs

    sent = ticks.beat_tick(self.request)
    sent_at = datetime.fromtimestamp(sent.sent_at, tz=UTC) if sent is not None else None
    runs.health_check_run(interval=interval, sent_at=sent_at, claim_id=self.request.id)


@shared_task(name="health.tasks.health_history_prune", bind=True, ignore_result=True)
def health_history_prune(self) -> dict[str, int]:
    """Daily: snapshots, runs, notifications and drill runs past HEALTH_RETENTION_DAYS."""
    from health import retention
    from health.services import runs

    if not ticks.once_per_tick(self.request, scope=runs.PRUNE_SCOPE):
        return {"snapshots": 0, "runs": 0, "notifications": 0, "drill_runs": 0}
    return {**runs.health_history_prune(), "notifications": retention.alert_notifications_prune(),
            "drill_runs": retention.drill_runs_prune()}


@shared_task(name="health.tasks.alert_notify", bind=True, ignore_result=True, acks_late=True,
             max_retries=NOTIFY_RETRIES)
def alert_notify(self, notification_id: int) -> None:
    """Sends one alert notification; a failed channel is retried with backoff, a sent one never again."""
    from health.services.notifications import NotificationFailed, alert_notification_send

    try:
        alert_notification_send(notification_id=notification_id)
    except NotificationFailed as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc


def _backoff(retries: int) -> int:
    """s before the next try: doubling, at most 300 s and never as long as the broker's visibility
    timeout (a countdown held longer than that is delivered a second time)."""
    return max(1, min(300, settings.CELERY_VISIBILITY_TIMEOUT // 2, 10 * 2 ** retries))


@shared_task(name="health.tasks.ping")
def ping(value: str) -> dict:
    """Round-trip probe: proves a worker consumes from the broker and reaches the database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('application_name')")
        (application_name,) = cursor.fetchone()
    return {"echo": value, "application_name": application_name}
