"""Celery: the workers answer a ping, and the queue is not piling up."""

from __future__ import annotations

from django.conf import settings
from redis.exceptions import RedisError

from config.redis import get_redis
from health.checks.base import Check, Problem, Reading, ServiceUnavailable, fleet_view

PING_TIMEOUT = 1.0  # s; with the expected number of workers known, answers usually take ms


class CeleryCheck(Check):
    name = "celery"

    def measure(self) -> Reading:
        from config.celery import app

        docs, _ = fleet_view()
        expected = sum(1 for doc in docs if doc.get("role") == "worker")
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        try:
            # The broker is this Redis: the queue is a list of that name.
            backlog = get_redis().llen(queue)
        except RedisError as exc:
            raise ServiceUnavailable("broker unreachable", condition="broker_unreachable") from exc
        # Stop collecting once every publishing worker answered, instead of waiting out the timeout.
        replies = app.control.inspect(timeout=PING_TIMEOUT, limit=expected or None).ping() or {}
        figures = {"workers": len(replies), "expected": expected, "queue": queue, "waiting": backlog,
                   "answered": sorted(replies)}
        if not replies:
            raise ServiceUnavailable(f"no worker answered within {PING_TIMEOUT:.0f} s", condition="no_workers",
                                     figures=figures)
        reading = Reading(figures=figures,
                          message=f"{len(replies)} workers answered; {backlog} tasks waiting in {queue}")
        if len(replies) < expected:
            reading.problems.append(Problem("workers_missing", "warning",
                                            f"{len(replies)} of {expected} workers answered the ping"))
        if backlog > settings.HEALTH_QUEUE_WARNING:
            reading.problems.append(Problem("queue_backlog", "warning",
                                            f"{backlog} tasks waiting in {queue} (warning above "
                                            f"{settings.HEALTH_QUEUE_WARNING})"))
        return reading
