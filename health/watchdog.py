"""The dead-man's switch without a poller: every web and worker process looks, from its pool
statistics publisher, whether a health run has landed in the last three intervals, so a stopped
beat or a fleet without workers raises the critical health/stale alert (and sends its
notifications from this very process) though no monitor polls /health/status. The alert is
raised once per episode: the first process to see it opens it, the others only bump it; the
next run that lands resolves it (health_check_run)."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connections

from health import fleet
from health.models import Alert
from health.selectors import health_staleness
from health.services.switch import health_stale_alert

logger = logging.getLogger(__name__)

_last_look = 0.0  # time.monotonic() of this process's last look
_lock = threading.Lock()


def health_stale_watch() -> Alert | None:
    """At most once per HEALTH_CHECK_INTERVAL: trips the switch if runs stopped. One indexed
    read per interval per process; the connection goes straight back to the pool."""
    global _last_look
    if not settings.HEALTH_STALE_WATCH:
        return None
    with _lock:
        now = time.monotonic()
        if now - _last_look < settings.HEALTH_CHECK_INTERVAL:
            return None
        _last_look = now
    try:
        staleness = health_staleness()
        if not staleness.stale:
            return None
        alert = health_stale_alert(staleness=staleness)
        if alert is not None:
            logger.warning("no health run for %s s: dead-man's switch tripped by %s", staleness.age_seconds,
                           fleet.process_id(), extra={"category": "health_stale_detected",
                                                      "age_s": staleness.age_seconds, "alert_id": alert.pk})
        return alert
    finally:
        # The publisher thread's own connection: never kept between looks.
        connections.close_all()
