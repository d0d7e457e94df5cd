"""Celery tasks of the health app."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="health.tasks.health_check_run", ignore_result=True)
def health_check_run() -> None:
    """Scheduled by beat every HEALTH_CHECK_INTERVAL seconds; the checks land in the health issue."""
    logger.debug("health check tick", extra={"category": "health_tick"})


@shared_task(name="health.tasks.ping")
def ping(value: str) -> dict:
    """Round-trip probe: proves a worker consumes from the broker and reaches the database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('application_name')")
        (application_name,) = cursor.fetchone()
    return {"echo": value, "application_name": application_name}
