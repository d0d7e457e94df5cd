"""From readings to findings: the alert thresholds, with a margin so a value hovering at a
threshold does not flap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings

from health.checks.base import Level, Reading
from health.models import Alert, Severity


@dataclass(frozen=True)
class Finding:
    component: str
    condition: str
    severity: str
    message: str


def findings_for(component: str, reading: Reading, *, active: Mapping[tuple[str, str], Alert]) -> list[Finding]:
    """What this reading says is wrong; `active` holds the open alerts, whose hysteresis applies."""
    findings = [Finding(component, p.condition, p.severity, p.message) for p in reading.problems]
    for condition, value in reading.utilisation.items():
        current = active.get((component, condition))
        severity = utilisation_severity(value, current=current.severity if current is not None else None)
        if severity is not None:
            findings.append(Finding(component, condition, severity, _utilisation_message(component, condition, value)))
    for condition, level in reading.levels.items():
        current = active.get((component, condition))
        severity = level_severity(level, current=current.severity if current is not None else None)
        if severity is not None:
            findings.append(Finding(component, condition, severity, level.message))
    return findings


def level_severity(level: Level, *, current: str | None) -> str | None:
    """Above `error` an error, above `warning` a warning; an alert already raised keeps its
    severity until the value falls ALERT_HYSTERESIS_MARGIN below that threshold, so a value
    hovering at a threshold changes the alert at most once each way."""
    margin = settings.ALERT_HYSTERESIS_MARGIN
    held = current in (Severity.ERROR, Severity.CRITICAL)  # an error that escalated is still this level
    if level.value > level.error or (held and level.value > level.error - margin):
        return Severity.ERROR
    if level.value > level.warning or (current is not None and level.value > level.warning - margin):
        return Severity.WARNING
    return None


def utilisation_severity(value: float | None, *, current: str | None) -> str | None:
    """Above ALERT_CRITICAL_THRESHOLD critical, above ALERT_WARNING_THRESHOLD warning; an alert
    already at a level keeps it until the value falls ALERT_HYSTERESIS_MARGIN below its threshold."""
    if value is None:
        return None
    warning, critical = settings.ALERT_WARNING_THRESHOLD, settings.ALERT_CRITICAL_THRESHOLD
    margin = settings.ALERT_HYSTERESIS_MARGIN
    if value > critical or (current == Severity.CRITICAL and value > critical - margin):
        return Severity.CRITICAL
    if value > warning or (current is not None and value > warning - margin):
        return Severity.WARNING
    return None


def _utilisation_message(component: str, condition: str, value: float) -> str:
    return (f"{component} {condition.replace('_', ' ')} at {value:.0f}% "
            f"(warning above {settings.ALERT_WARNING_THRESHOLD}%, critical above {settings.ALERT_CRITICAL_THRESHOLD}%)")
