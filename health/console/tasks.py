"""Celery tasks of the console's drills: they take an id and call one service.

Registered with the worker through health.admin, which every Django process (web, worker,
beat) imports at start-up through the admin's autodiscovery."""

from __future__ import annotations

from celery import shared_task

from health.console import services
from health.console.services import DRILL_TIME_LIMIT


@shared_task(name="health.console.tasks.drill_run", ignore_result=True,
             soft_time_limit=DRILL_TIME_LIMIT, time_limit=DRILL_TIME_LIMIT + 15)
def drill_run(run_id: int) -> None:
    services.drill_execute(run_id=run_id)
