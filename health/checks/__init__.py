"""One small check per component; `default_checks()` is what every health run measures."""

from __future__ import annotations

from health.checks.base import Check, Problem, Reading, ServiceUnavailable, ServiceWarning
from health.checks.celery import CeleryCheck
from health.checks.database import DatabaseCheck
from health.checks.gateway import GatewayCheck
from health.checks.http_pools import OutboundHttpCheck, PaymentHttpCheck
from health.checks.logging import LoggingCheck
from health.checks.payments import PaymentsCheck
from health.checks.redis import RedisCheck
from health.checks.web import WebThreadsCheck

__all__ = [
    "Check", "Problem", "Reading", "ServiceUnavailable", "ServiceWarning", "default_checks",
    "CeleryCheck", "DatabaseCheck", "GatewayCheck", "LoggingCheck", "OutboundHttpCheck",
    "PaymentHttpCheck", "PaymentsCheck", "RedisCheck", "WebThreadsCheck",
]


def default_checks() -> list[Check]:
    return [
        DatabaseCheck(), WebThreadsCheck(), PaymentHttpCheck(), OutboundHttpCheck(), GatewayCheck(),
        RedisCheck(), CeleryCheck(), LoggingCheck(), PaymentsCheck(),
    ]
