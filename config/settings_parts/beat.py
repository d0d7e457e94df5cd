"""What Celery beat sends, how often, and how long each tick stays worth running."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab


def beat_schedule(*, health_check_interval: int, settle_sweep_interval: int) -> dict[str, dict[str, Any]]:
    """CELERY_BEAT_SCHEDULE for the health check and the payment sweeps (intervals in s)."""
    sweep_options = {"expires": max(1.0, settle_sweep_interval - 10.0)}  # s, before the next one
    return {
        "health-check": {
            "task": "health.tasks.health_check_run",
            "schedule": float(health_check_interval),
            # A tick not picked up before the next one is worthless: the next one measures anew.
            "options": {"expires": max(1.0, health_check_interval * 0.8)},
            # The task takes its tick from the interval the beat that sent it runs with.
            "kwargs": {"interval": health_check_interval},
        },
        "payment-settle-sweep": {
            "task": "payments.tasks.payment_settle_sweep",
            "schedule": float(settle_sweep_interval),
            "options": dict(sweep_options),
        },
        # Gateway events stored but never taken by a worker (the broker was away), or left by a
        # worker that died, are queued again by this sweep.
        "gateway-event-sweep": {
            "task": "payments.webhooks.tasks.gateway_event_sweep",
            "schedule": float(settle_sweep_interval),
            "options": dict(sweep_options),
        },
        "health-prune": {
            "task": "health.tasks.health_history_prune",
            "schedule": crontab(hour=3, minute=17),  # daily, UTC
            "options": {"expires": 3600.0},  # s
        },
        "idempotency-prune": {
            "task": "payments.tasks.idempotency_records_prune",
            "schedule": crontab(hour=3, minute=47),  # daily, UTC, apart from the health prune
            "options": {"expires": 3600.0},  # s
        },
    }
