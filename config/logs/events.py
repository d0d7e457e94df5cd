"""Structured events: one category per kind of failure, with the ids that tie records together.

    log_event(logger, "payment_timeout", "gateway call timed out",
              level=logging.WARNING, payment_id=payment.id, attempt=2, duration_ms=10004)

See docs/logging.md for what each category means and which context ids it carries.
"""

from __future__ import annotations

import logging
from typing import Any

# Known categories. Others are allowed (a new failure should still be logged before this
# list learns about it) but are marked `category_known: false`, so a Logs Insights query
# finds strays and typos.
CATEGORIES: tuple[str, ...] = (
    # the gateway, the database pools, outbound HTTP and alerts
    "payment_timeout",
    "payment_connection_error",
    "gateway_5xx",
    "gateway_rate_limited",
    "circuit_open",
    "circuit_closed",
    "payment_unknown_outcome",
    "db_pool_exhausted",
    "db_pool_timeout",
    "db_unavailable",
    "http_pool_full",
    "alert_raised",
    "alert_resolved",
    # the logging pipeline itself
    "cloudwatch_unavailable",
    "cloudwatch_recovered",
    "metrics",
)
_KNOWN = frozenset(CATEGORIES)

# Context ids every category may carry (documented in docs/logging.md).
CONTEXT_FIELDS: tuple[str, ...] = (
    "payment_id", "attempt", "idempotency_key", "gateway_request_id", "duration_ms", "role",
)

# Names a LogRecord already has: passing one in `extra` raises KeyError inside logging.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def log_event(logger: logging.Logger, category: str, message: str, *, level: int = logging.INFO,
              **context: Any) -> None:
    """Logs `message` with `category` and the context ids as JSON fields; never raises on names."""
    extra: dict[str, Any] = {"category": category}
    if category not in _KNOWN:
        extra["category_known"] = False
    for key, value in context.items():
        # A context key such as `name` or `msg` would make logging raise; keep it under
        # another name instead of losing the record.
        extra[f"ctx_{key}" if key in _RESERVED else key] = value
    # stacklevel=2: funcName and lineno name the caller, not this helper.
    logger.log(level, message, extra=extra, stacklevel=2)
