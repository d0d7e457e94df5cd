"""Celery tasks of the console's drills: they take an id and call one service.

Registered with the worker through health.admin, which every Django process (web, worker,
beat) imports at start-up through the admin's autodiscovery."""

from __future__ import annotations

from celery import shared_task

DRILL_TIME_LIMIT = 90  # s a drill may run (the task's soft time limit)


@shared_task(name="health.console.tasks.drill_run", ignore_result=True,
             soft_time_limit=DRILL_TIME_LIMIT, time_limit=DRILL_TIME_LIMIT + 15)
def drill_run(run_id: int) -> None:
    from health.console.services import drill_execute

    drill_execute(run_id=run_id)
