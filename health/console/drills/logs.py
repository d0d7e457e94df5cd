"""The log drill: a burst of log lines through the configured handlers, CloudWatch's delivery counted."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from health.console.drills.limits import Progress


# --- Log test ------------------------------------------------------------------------------------
def log_test(*, run_id: int, progress: Progress) -> dict[str, Any]:
    """One categorised record handed to every handler configured for it; then CloudWatch's
    handler is flushed and its counters say whether CloudWatch accepted the record."""
    from config.logs import cloudwatch

    drill_logger = logging.getLogger("health.console.drills")
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = drill_logger
    while current is not None:
        handlers.extend(h for h in current.handlers if h not in handlers)
        current = current.parent if current.propagate else None
    active = getattr(cloudwatch, "_active", None)
    if active is not None and active not in handlers:
        handlers.append(active)  # CloudWatch is configured for this process even if not on this path
    before = cloudwatch.handler_stats()
    record = drill_logger.makeRecord(
        drill_logger.name, logging.WARNING, __file__, 0, "console log drill %s: a test record, no action needed",
        (run_id,), None, extra={"category": "drill_log_test", "drill_id": run_id},
    )
    results = []
    for index, handler in enumerate(handlers, start=1):
        progress(index - 1, len(handlers) + 1, f"sending to {handler.__class__.__name__}")
        entry: dict[str, Any] = {"handler": handler.__class__.__name__, "name": handler.get_name() or "",
                                 "level": logging.getLevelName(handler.level), "target": _handler_target(handler)}
        if record.levelno < handler.level:
            entry.update(delivered=False, error="below the handler's level")
        else:
            try:
                handler.handle(record)
                handler.flush() if handler is not active else None
                entry.update(delivered=True, error="")
            except Exception as exc:  # noqa: BLE001 - a handler's failure is what the drill reports
                entry.update(delivered=False, error=exc.__class__.__name__)
        results.append(entry)
    progress(len(handlers), len(handlers) + 1, "waiting for CloudWatch")
    if before is None:
        cloud: dict[str, Any] = {"enabled": False, "accepted": None,
                                 "detail": "CloudWatch is off (CLOUDWATCH_LOG_GROUP is not set)"}
    else:
        flushed = cloudwatch.cloudwatch_flush(timeout=settings.CLOUDWATCH_TIMEOUT)
        after = cloudwatch.handler_stats() or {}
        sent = (after.get("sent") or 0) - (before.get("sent") or 0)
        errors = (after.get("errors") or 0) - (before.get("errors") or 0)
        failed = (after.get("failed") or 0) - (before.get("failed") or 0)
        accepted = flushed and sent >= 1 and failed == 0
        cloud = {"enabled": True, "accepted": accepted, "flushed": flushed, "sent": sent, "errors": errors,
                 "failed": failed, "state": after.get("state"), "last_error": after.get("last_error"),
                 "log_group": settings.CLOUDWATCH_LOG_GROUP,
                 "detail": "CloudWatch accepted the batch" if accepted else
                 f"not confirmed: {sent} sent, {errors} errors, {failed} failed"
                 + (f" (last error {after.get('last_error')})" if after.get("last_error") else "")}
    progress(len(handlers) + 1, len(handlers) + 1, "done")
    return {"category": "drill_log_test", "logger": drill_logger.name, "handlers": results, "cloudwatch": cloud}


def _handler_target(handler: logging.Handler) -> str:
    if hasattr(handler, "baseFilename"):
        return str(handler.baseFilename)
    stream = getattr(handler, "stream", None)
    if stream is not None:
        return getattr(stream, "name", stream.__class__.__name__)
    group = getattr(handler, "log_group_name", None)
    return f"CloudWatch {group}" if group else ""
