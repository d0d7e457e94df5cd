"""The publisher thread of every web and worker process: every HEALTH_PUBLISH_INTERVAL it
publishes this process's pool statistics for the fleet view (health/fleet.py) and looks
whether health runs stopped (the dead-man's switch, health/watchdog.py). Started on the first
request (web) or when the worker is ready, never a Redis round-trip on a request's path."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from health import fleet
from health.services.publishing import pool_stats_publish
from health.watchdog import health_stale_watch

logger = logging.getLogger(__name__)

_started = False
_start_lock = threading.Lock()
_stop = threading.Event()


def ensure_publisher() -> None:
    """Start this process's publisher once; cheap to call on every request."""
    global _started
    if _started:
        return
    with _start_lock:
        if _started or fleet.publish_interval() <= 0:
            _started = True
            return
        thread = threading.Thread(target=_publish_loop, name="payops-fleet-stats", daemon=True)
        thread.start()
        atexit.register(forget_self)
        _started = True


def _after_fork_in_child() -> None:
    # A forked child has no publisher thread: it starts its own.
    global _started
    _started = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _publish_loop() -> None:
    failing = False
    interval = fleet.publish_interval()
    while not _stop.is_set():
        try:
            pool_stats_publish()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
            if not failing:
                # "process" is a LogRecord attribute: as an extra key it made logging raise
                # here and killed this thread for good on the first Redis outage.
                _log_quietly(logging.WARNING, "pool statistics not published: %s", exc.__class__.__name__,
                             extra={"category": "fleet_publish_failed", "fleet_process": fleet.process_id()})
            failing = True
        else:
            if failing:
                _log_quietly(logging.INFO, "pool statistics published again",
                             extra={"category": "fleet_publish_restored"})
            failing = False
        _watch_quietly()
        _stop.wait(interval)


def _watch_quietly() -> None:
    try:
        health_stale_watch()
    except Exception as exc:  # noqa: BLE001 - the database away is the database check's news
        _log_quietly(logging.INFO, "staleness not checked: %s", exc.__class__.__name__,
                     extra={"category": "health_stale_watch_failed"})


def _log_quietly(level: int, message: str, *args: Any, extra: dict[str, Any]) -> None:
    try:
        logger.log(level, message, *args, extra=extra)
    except Exception:  # noqa: BLE001 - a logging failure must not end the publisher
        pass


def forget_self() -> None:
    _stop.set()
    try:
        fleet.forget(fleet.process_id())
    except Exception:  # noqa: BLE001 - shutting down; the key expires anyway
        pass
