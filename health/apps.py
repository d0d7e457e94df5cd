from django.apps import AppConfig
from django.conf import settings

PUBLISHING_ROLES = ("web", "worker")


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "System health"

    def ready(self) -> None:
        # Breaker transitions become gateway/circuit_open alerts in every process that pays.
        from health.services.breaker_alerts import alert_from_breaker_transition
        from payments.gateway import breaker_listener_add

        breaker_listener_add(alert_from_breaker_transition)
        # Web and worker processes publish their pool statistics for the fleet view; the
        # thread starts with the first request or when the worker is ready, not at import.
        if settings.PROCESS_ROLE not in PUBLISHING_ROLES or settings.HEALTH_PUBLISH_INTERVAL <= 0:
            return
        from celery import signals as celery_signals
        from django.core.signals import request_started

        request_started.connect(_start_publisher, dispatch_uid="health.fleet.publisher")
        celery_signals.worker_ready.connect(_start_publisher, dispatch_uid="health.fleet.publisher", weak=False)
        # Prefork children run the tasks, so they publish their own pools.
        celery_signals.worker_process_init.connect(_start_publisher, dispatch_uid="health.fleet.publisher.child",
                                                   weak=False)
        celery_signals.worker_shutdown.connect(_forget, dispatch_uid="health.fleet.forget", weak=False)


def _start_publisher(**kwargs: object) -> None:
    from health import publisher  # after the app registry is ready: it reaches the models

    publisher.ensure_publisher()


def _forget(**kwargs: object) -> None:
    from health import publisher

    publisher.forget_self()
