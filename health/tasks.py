"""Celery tasks of the health app: they parse arguments and call one service."""

from __future__ import annotations

import logging

from celery import shared_task

from health import services

logger = logging.getLogger(__name__)

NOTIFY_RETRIES = 5


@shared_task(name="health.tasks.health_check_run", ignore_result=True)
def health_check_run(interval: int | None = None) -> None:
    """Scheduled by beat every HEALTH_CHECK_INTERVAL seconds (`interval` is the beat's); a tick
    already run (a second beat, a redelivery) is skipped by the service."""
    services.health_check_run(interval=interval)


@shared_task(name="health.tasks.health_history_prune", ignore_result=True)
def health_history_prune() -> dict[str, int]:
    return services.health_history_prune()


@shared_task(name="health.tasks.alert_notify", bind=True, ignore_result=True, acks_late=True,
             max_retries=NOTIFY_RETRIES)
def alert_notify(self, notification_id: int) -> None:  # type: ignore[no-untyped-def]
    """Sends one alert notification; a failed channel is retried with backoff, a sent one never again."""
    try:
        services.alert_notification_send(notification_id=notification_id)
    except services.NotificationFailed as exc:
        raise self.retry(exc=exc, countdown=min(300, 10 * 2 ** self.request.retries))


@shared_task(name="health.tasks.ping")
def ping(value: str) -> dict:
    """Round-trip probe: proves a worker consumes from the broker and reaches the database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('application_name')")
        (application_name,) = cursor.fetchone()
    return {"echo": value, "application_name": application_name}
