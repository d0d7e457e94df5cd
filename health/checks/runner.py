"""Runs checks concurrently, each within its budget, so one slow dependency never stalls the rest.

Each check runs in a daemon thread of its own. A check that overruns its budget is reported
`down` and left to finish in the background; until it does, the next run reports it down at
once instead of piling up another thread behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.db import connections

from health.checks.base import STATUS_RANK, Check, CheckError, Problem, Reading, fleet_view_forget

logger = logging.getLogger(__name__)

_inflight: dict[str, threading.Thread] = {}
_inflight_lock = threading.Lock()


def run_checks(checks: Sequence[Check]) -> dict[str, Reading]:
    """Every check's reading, by component name, in at most the largest budget."""
    started = time.monotonic()
    fleet_view_forget()
    futures = [(check, _start(check)) for check in checks]
    readings: dict[str, Reading] = {}
    for check, future in futures:
        budget = _budget(check)
        try:
            readings[check.name] = future.result(timeout=max(0.0, started + budget - time.monotonic()))
        except FutureTimeout:
            message = f"no answer within {budget * 1000:.0f} ms"
            readings[check.name] = Reading(status="down", message=message,
                                           problems=[Problem("timeout", "error", f"{check.name} check: {message}")])
    return readings


def _budget(check: Check) -> float:
    return check.budget if check.budget is not None else settings.HEALTH_CHECK_TIMEOUT


def _start(check: Check) -> Future[Reading]:
    future: Future[Reading] = Future()
    with _inflight_lock:
        previous = _inflight.get(check.name)
        if previous is not None and previous.is_alive():
            message = "the previous check has not finished yet"
            future.set_result(Reading(status="down", message=message,
                                      problems=[Problem("timeout", "error", f"{check.name} check: {message}")]))
            return future
        thread = threading.Thread(target=_measure, args=(check, future), name=f"health-{check.name}", daemon=True)
        _inflight[check.name] = thread
    thread.start()
    return future


def _measure(check: Check, future: Future[Reading]) -> None:
    started = time.perf_counter()
    try:
        reading = check.measure()
    except CheckError as exc:
        reading = exc.reading()
    except Exception as exc:  # noqa: BLE001 - a broken check reports down, never breaks the run
        logger.exception("health check %s failed", check.name,
                         extra={"category": "health_check_failed", "component": check.name})
        message = f"check failed: {exc.__class__.__name__}"
        reading = Reading(status="down", message=message,
                          problems=[Problem("check_failed", "error", f"{check.name} {message}")])
    finally:
        # This thread's database connection goes back to the pool.
        connections.close_all()
    reading.figures["check_ms"] = round((time.perf_counter() - started) * 1000, 2)
    _settle_status(reading)
    future.set_result(reading)


def _settle_status(reading: Reading) -> None:
    """A reading with problems or a pool above the warning threshold is at least degraded."""
    worrying = bool(reading.problems) or any(
        value is not None and value > settings.ALERT_WARNING_THRESHOLD for value in reading.utilisation.values()
    ) or any(level.value > level.warning for level in reading.levels.values())
    if worrying and STATUS_RANK.get(reading.status, 0) < STATUS_RANK["degraded"]:
        reading.status = "degraded"
