"""Test-only Celery tasks, imported by workers started with config.settings_test."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="tests.support.tasks.nap", acks_late=True)
def nap(seconds: float) -> float:
    """Holds its message (unacknowledged) for `seconds` while it runs."""
    time.sleep(seconds)
    return seconds
