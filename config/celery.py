"""The Celery app, configured from Django settings (CELERY_ namespace)."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("payops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _keep_django_logging(**_: object) -> None:
    # A receiver here stops Celery from replacing the root handlers with its own, which
    # would drop the JSON format, the redaction filter and CloudWatch in workers and beat.
    from config.logs.setup import ensure_configured

    ensure_configured()


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _flush_logs(**_: object) -> None:
    # Prefork children leave with os._exit (no atexit); send what CloudWatch has queued,
    # bounded by CLOUDWATCH_FLUSH_TIMEOUT.
    from config.logs.cloudwatch import cloudwatch_flush

    cloudwatch_flush()


@signals.task_prerun.connect
def _name_connection_holder(task: object = None, **_: object) -> None:
    # A connection a task holds too long is reported with the task's name.
    from config.postgres.leaks import holder_set

    holder_set(f"task {getattr(task, 'name', '?')}")


@signals.task_postrun.connect
def _clear_connection_holder(**_: object) -> None:
    from config.postgres.leaks import holder_clear

    holder_clear()
