"""CloudWatch Logs from settings; never blocking, never fatal.

`make_handler` is the factory `build_logging` names when CLOUDWATCH_LOG_GROUP is set.
`handler_stats` is what the health check reads; `cloudwatch_flush` is what process
shutdown hooks call. This module imports boto3 and watchtower only when CloudWatch is on.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

if TYPE_CHECKING:
    from config.logs.handler import BoundedCloudWatchHandler

logger = logging.getLogger(__name__)

# Retention periods CloudWatch Logs accepts (PutRetentionPolicy.retentionInDays).
RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)

_active: BoundedCloudWatchHandler | None = None
_setup_error: tuple[str, float] | None = None


def stream_prefix(*, host: str, role: str) -> str:
    """`{host}/{role}`; the handler appends the pid of the process that logs."""
    return f"{host}/{role}"


def make_handler() -> logging.Handler:
    """The CloudWatch handler for this process, or a NullHandler when it cannot be built."""
    global _active, _setup_error
    try:
        from config.logs.client import LazyClient, logs_client
        from config.logs.handler import BoundedCloudWatchHandler

        endpoint = settings.AWS_ENDPOINT_URL
        if endpoint is not None and urlsplit(endpoint).scheme not in {"http", "https"}:
            raise ValueError("AWS_ENDPOINT_URL must be an http(s) URL")
        client = LazyClient(functools.partial(
            logs_client, region=settings.AWS_REGION, endpoint_url=endpoint, timeout=settings.CLOUDWATCH_TIMEOUT,
        ))
        handler = BoundedCloudWatchHandler(
            log_group_name=str(settings.CLOUDWATCH_LOG_GROUP),  # set: CloudWatch is on
            stream_prefix=stream_prefix(host=settings.HOSTNAME, role=settings.PROCESS_ROLE),
            boto3_client=client,
            retention_days=getattr(settings, "CLOUDWATCH_RETENTION_DAYS", 0) or None,
            max_queue_size=getattr(settings, "CLOUDWATCH_QUEUE_SIZE", 10000),
            send_interval=getattr(settings, "CLOUDWATCH_SEND_INTERVAL", 5.0),
            flush_timeout=getattr(settings, "CLOUDWATCH_FLUSH_TIMEOUT", 5.0),
            stall_after=settings.CLOUDWATCH_TIMEOUT,
        )
    except Exception as exc:  # logging must never take the service down
        _setup_error = (exc.__class__.__name__, time.time())
        logger.warning("CloudWatch handler unavailable: %s", exc.__class__.__name__,
                       extra={"category": "cloudwatch_unavailable"})
        return logging.NullHandler()
    _active, _setup_error = handler, None
    return handler


def handler_stats() -> dict[str, Any] | None:
    """Queue and delivery counters of this process's CloudWatch handler; None when CloudWatch is off.

    Keys: queued, capacity, sent, dropped, errors, failed, last_error_at, last_success_at
    (Unix seconds or None), last_error (exception class name), send_in_flight_s, state
    ("ok", "degraded", or "unavailable" when the handler could not be built).
    """
    if _active is not None:
        return _active.stats()
    if _setup_error is not None:
        name, at = _setup_error
        return {
            "queued": 0, "capacity": 0, "sent": 0, "dropped": 0, "errors": 1, "failed": 0,
            "last_error_at": at, "last_success_at": None, "last_error": name, "send_in_flight_s": 0.0,
            "state": "unavailable",
        }
    return None


def cloudwatch_flush(*, timeout: float | None = None) -> bool:
    """Sends queued records, waiting at most `timeout` s (CLOUDWATCH_FLUSH_TIMEOUT by default)."""
    if _active is None:
        return True
    return _active.flush_within(_active.flush_timeout if timeout is None else timeout)
