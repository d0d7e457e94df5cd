"""The dead-man's switch: the critical health/stale alert when runs stop, cleared by the next run."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from health.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    Severity,
)
from health.selectors import Staleness, health_staleness
from health.services.alerts import alert_raise, alert_resolve
from health.services.notifications import SELF_COMPONENT

# --- The dead-man's switch -------------------------------------------------------------------
STALE_SWITCH_LOCK = 0x70617973_7374616C  # pg_advisory_xact_lock key ("pays" "stal")


def stale_switch_lock() -> None:
    """Orders a web process tripping the switch against a run landing: without it, a process
    that read the last run just before a new one committed raises (or reopens) the alert right
    after that run resolved it, and ops are paged for an episode that is over."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STALE_SWITCH_LOCK])


@transaction.atomic
def health_stale_alert(*, staleness: Staleness) -> Alert | None:
    """Raises the critical health/stale alert when runs stopped, at most once per interval."""
    if not staleness.stale or staleness.last_run_at is None:
        return None
    stale_switch_lock()
    # Read again under the lock: a run that landed since the caller looked ends the episode.
    staleness = health_staleness()
    if not staleness.stale or staleness.last_run_at is None:
        return None
    now = timezone.now()
    recent = Alert.objects.filter(component=SELF_COMPONENT, condition="stale", status__in=ACTIVE_ALERT_STATUSES,
                                  last_seen__gte=now - timedelta(seconds=settings.HEALTH_CHECK_INTERVAL))
    if recent.exists():
        return None
    return alert_raise(
        component=SELF_COMPONENT, condition="stale", severity=Severity.CRITICAL, seen_at=now,
        message=f"no health check for {staleness.age_seconds:.0f} s (limit {staleness.limit_seconds:.0f} s): "
                "is beat or every worker down?",
    )


def stale_alert_clear(*, seen_at: datetime) -> None:
    # A run is the proof the switch waits for: no hysteresis.
    for alert in Alert.objects.filter(component=SELF_COMPONENT, condition="stale",
                                      status__in=ACTIVE_ALERT_STATUSES):
        alert_resolve(alert=alert, note="health checks run again", now=seen_at)
