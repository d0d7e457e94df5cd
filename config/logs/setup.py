"""Logging configuration: JSON to stdout always, CloudWatch only when a log group is set.

Every handler carries the redaction filter, so whatever reaches stdout or CloudWatch,
from our code or from a library, has had card numbers and credentials masked.
"""

from __future__ import annotations

import logging
from typing import Any

REDACTION_FILTER = "redact"


def build_logging(*, level: str, fmt: str, role: str, cloudwatch_group: str | None) -> dict[str, Any]:
    handlers: dict[str, Any] = {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": fmt if fmt in {"json", "text"} else "json",
            "filters": [REDACTION_FILTER],
        },
    }
    if cloudwatch_group:
        # A factory, not a class: it degrades to a stub handler when CloudWatch cannot be
        # set up, so logging never stops the service from starting.
        handlers["cloudwatch"] = {
            "()": "config.logs.cloudwatch.make_handler",
            "formatter": "json",
            "filters": [REDACTION_FILTER],
        }
    root_handlers = list(handlers)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {REDACTION_FILTER: {"()": "config.logs.redaction.RedactionFilter"}},
        "formatters": {
            "json": {"()": "config.logs.formatter.JsonFormatter", "role": role},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": handlers,
        "root": {"level": level, "handlers": root_handlers},
        "loggers": {
            "django": {"level": level, "handlers": root_handlers, "propagate": False},
            # Django's default config gives it a handler of its own without our filter;
            # naming ours replaces it.
            "django.server": {"level": "WARNING", "handlers": root_handlers, "propagate": False},
            "celery": {"level": level},
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            # Metrics are records CloudWatch turns into numbers: a quieter LOG_LEVEL must
            # not switch them off.
            "payops.metrics": {"level": "INFO"},
        },
    }


def logging_configured() -> bool:
    """True when the root logger carries our handlers (our filter is on one of them)."""
    from config.logs.redaction import RedactionFilter

    return any(isinstance(f, RedactionFilter) for h in logging.getLogger().handlers for f in h.filters)


def ensure_configured() -> None:
    """Applies settings.LOGGING unless it already is; for processes (Celery) that would
    otherwise replace the root handlers with their own."""
    if logging_configured():
        return
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
