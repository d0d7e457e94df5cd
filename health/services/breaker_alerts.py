"""The gateway breaker's transitions as alerts (registered as a breaker listener in apps.py)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import connection

from health.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    Severity,
)
from health.services.alerts import alert_raise, alert_resolve
from health.services.notifications import in_own_connection

logger = logging.getLogger(__name__)


def alert_from_breaker_transition(*, old: str, new: str, snapshot: Any) -> None:
    """Called by the gateway breaker on each transition: opened -> error alert
    gateway/circuit_open, closed -> resolved. Never raises.

    Gateway calls run outside transactions, so this normally writes at once on the caller's
    own connection (a transition is rare; it costs a few queries). Inside a transaction it
    writes from a thread with a connection of its own instead, so that a rollback of the
    caller's work cannot take the alert with it."""
    if new == "open":
        severity, message = breaker_open_finding(snapshot, old=old)

        def work() -> None:
            alert_raise(component="gateway", condition="circuit_open", severity=severity, message=message,
                        impact=_in_flight())
    elif new == "closed":
        def work() -> None:
            alert = Alert.objects.filter(component="gateway", condition="circuit_open",
                                         status__in=ACTIVE_ALERT_STATUSES).first()
            if alert is not None:
                alert_resolve(alert=alert, note=f"circuit breaker closed (was {old})")
    else:
        return
    if connection.in_atomic_block:
        threading.Thread(target=in_own_connection, args=(work,), name="health-breaker-alert", daemon=True).start()
        return
    try:
        work()
    except Exception:  # noqa: BLE001 - the payment that tripped the breaker must not notice
        logger.exception("breaker alert not recorded", extra={"category": "alert_error"})


def breaker_open_finding(snapshot: Any, *, old: str = "closed") -> tuple[str, str]:
    """Severity and message of an open breaker; an open forced by ops is only a warning."""
    if snapshot.forced:
        return Severity.WARNING, f"circuit breaker forced open by {snapshot.forced.get('by')}: " \
                                 f"{snapshot.forced.get('reason')}"
    if old == "half_open":
        return Severity.ERROR, f"circuit breaker open again: the half-open probe failed; next try in " \
                               f"{snapshot.retry_after:.0f} s"
    failed = f"{snapshot.failures} of {snapshot.calls} calls failed; " if snapshot.calls >= 0 else ""
    return Severity.ERROR, f"circuit breaker open: {failed}next try in {snapshot.retry_after:.0f} s"


def _in_flight() -> dict[str, Any] | None:
    try:
        from payments.selectors import payment_in_flight_summary

        return payment_in_flight_summary()
    except Exception:  # noqa: BLE001 - the alert matters more than its figures
        return None
