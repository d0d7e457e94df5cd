"""Which payments an alert affected: counted by its component, over the time it was open.

A gateway, database or web-tier alert is charged with the payments that were left unfinished
while it lasted (shed and still pending, gone unknown, stuck in processing); the payments
check's own alerts with the payments in flight; any other alert (Redis memory, log shipping,
a worker missing) with none: its numbers must not borrow the gateway's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

# Components whose trouble stops payments from finishing.
PAYMENT_PATH = frozenset({"gateway", "payment_http", "database", "web"})


def alert_impact(*, component: str, first_seen: datetime,
                 in_flight: dict[str, Any] | None) -> dict[str, Any] | None:
    """{"count", "amounts" per currency} for an alert of `component` open since `first_seen`,
    or None when the component does not touch payments. `in_flight` is this run's payments
    in flight (the payments check's figure)."""
    if component == "payments":
        return in_flight
    if component not in PAYMENT_PATH:
        return None
    from payments.selectors import payment_unfinished_summary

    # The check that raised it looked back one interval: the payments that made it fire count.
    since = first_seen - timedelta(seconds=settings.HEALTH_CHECK_INTERVAL)
    return payment_unfinished_summary(since=since)
