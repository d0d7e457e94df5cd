"""Logging configuration: JSON to stdout always, CloudWatch only when a log group is set."""

from __future__ import annotations

from typing import Any


def build_logging(*, level: str, fmt: str, role: str, cloudwatch_group: str | None) -> dict[str, Any]:
    handlers: dict[str, Any] = {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": fmt if fmt in {"json", "text"} else "json",
        },
    }
    if cloudwatch_group:
        # A factory, not a class: it degrades to a stub handler when CloudWatch cannot be
        # set up, so logging never stops the service from starting.
        handlers["cloudwatch"] = {"()": "config.logs.cloudwatch.make_handler", "formatter": "json"}
    root_handlers = list(handlers)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "config.logs.formatter.JsonFormatter", "role": role},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        },
        "handlers": handlers,
        "root": {"level": level, "handlers": root_handlers},
        "loggers": {
            "django": {"level": level, "handlers": root_handlers, "propagate": False},
            "django.server": {"level": "WARNING"},
            "celery": {"level": level},
            "botocore": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }
