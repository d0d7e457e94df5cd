"""The alert lifecycle: raised, bumped, escalated, acknowledged, resolved, silenced."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from health.impact import alert_impact
from health.models import (
    ACTIVE_ALERT_STATUSES,
    SEVERITY_RANK,
    Alert,
    AlertStatus,
    NotificationEvent,
    Severity,
    Silence,
)
from health.selectors import silences_active
from health.services.notifications import notification_queue

logger = logging.getLogger(__name__)


REOPEN_WINDOW = timedelta(hours=1)  # a condition back within this reopens its resolved alert


class AlertNotActive(ValidationError):
    pass


# --- Alerts ----------------------------------------------------------------------------------
@transaction.atomic
def alert_raise(*, component: str, condition: str, severity: str, message: str,
                seen_at: datetime | None = None, impact: dict[str, Any] | None = None) -> Alert:
    """Opens the alert for component/condition, reopens it if it cleared recently, or bumps the
    active one; severity rises or falls in place, and an error that lasts beyond
    ALERT_ESCALATE_AFTER checks becomes critical."""
    now = seen_at or timezone.now()
    alert = _active_alert(component, condition)
    change = "seen"
    if alert is None:
        alert = (Alert.objects.select_for_update()
                 .filter(component=component, condition=condition, status=AlertStatus.RESOLVED,
                         resolved_at__gte=now - REOPEN_WINDOW)
                 .order_by("-resolved_at").first())
        if alert is not None:
            change = "reopened"
            alert.status = AlertStatus.OPEN
            alert.reopened += 1
            alert.resolved_at = alert.resolved_by = alert.acknowledged_at = alert.acknowledged_by = None
            alert.resolution_note = alert.acknowledgement_note = ""
            alert.occurrences += 1
            alert.streak = 1
        else:
            created = _alert_create(component=component, condition=condition, severity=severity,
                                    message=message, now=now)
            if created is None:  # another process opened it a moment ago
                return alert_raise(component=component, condition=condition, severity=severity,
                                   message=message, seen_at=seen_at, impact=impact)
            alert, change = created, "raised"
    else:
        alert.occurrences += 1
        alert.streak += 1
    alert.absent_checks = 0
    alert.last_seen = max(alert.last_seen, now)
    alert.message = message[:500]
    if severity == Severity.ERROR and alert.streak > settings.ALERT_ESCALATE_AFTER:
        severity = Severity.CRITICAL
        alert.message = f"{message} (for {alert.streak} checks)"[:500]
    previous = alert.severity
    alert.severity, alert.severity_rank = severity, SEVERITY_RANK[severity]
    if alert.status == AlertStatus.ACKNOWLEDGED and alert.severity_rank > SEVERITY_RANK[previous]:
        alert.status = AlertStatus.OPEN  # worse than what was acknowledged: it needs eyes again
    _impact_record(alert, alert_impact(component=component, first_seen=alert.first_seen, in_flight=impact))
    alert.save()
    _alert_log(alert, change, previous=previous)
    _notify_if_due(alert, now=now)
    return alert


def _active_alert(component: str, condition: str) -> Alert | None:
    return (Alert.objects.select_for_update()
            .filter(component=component, condition=condition, status__in=ACTIVE_ALERT_STATUSES).first())


def _alert_create(*, component: str, condition: str, severity: str, message: str, now: datetime) -> Alert | None:
    try:
        with transaction.atomic():
            return Alert.objects.create(
                component=component, condition=condition, severity=severity, severity_rank=SEVERITY_RANK[severity],
                message=message[:500], first_seen=now, last_seen=now,
            )
    except IntegrityError:
        return None


def _impact_record(alert: Alert, impact: dict[str, Any] | None) -> None:
    # The most seen at once while it was open: a payment settled since still counted then.
    if not impact:
        return
    alert.payments_in_flight = max(alert.payments_in_flight or 0, int(impact.get("count") or 0))
    amounts = dict(alert.amount_affected or {})
    for currency, amount in (impact.get("amounts") or {}).items():
        amounts[currency] = max(int(amounts.get(currency, 0)), int(amount or 0))
    alert.amount_affected = amounts


def _alert_log(alert: Alert, change: str, *, previous: str) -> None:
    extra = {"alert_id": alert.pk, "component": alert.component, "condition": alert.condition,
             "severity": alert.severity, "status": alert.status, "occurrences": alert.occurrences}
    if change in ("raised", "reopened"):
        logger.warning("alert %s %s/%s: %s", change, alert.component, alert.condition, alert.message,
                       extra={"category": "alert_raised", "reopened": change == "reopened", **extra})
    elif previous != alert.severity:
        logger.warning("alert %s/%s is now %s (was %s)", alert.component, alert.condition, alert.severity, previous,
                       extra={"category": "alert_severity_changed", "previous_severity": previous, **extra})
    else:
        logger.debug("alert %s/%s seen again", alert.component, alert.condition,
                     extra={"category": "alert_seen", **extra})


def _silenced(alert: Alert, now: datetime) -> bool:
    return any(s.matches(component=alert.component, condition=alert.condition) for s in silences_active(now=now))


def _notify_if_due(alert: Alert, *, now: datetime) -> None:
    """New error/critical alerts, and rises to a severity not yet told, are notified once each."""
    if alert.severity_rank < SEVERITY_RANK[Severity.ERROR] or alert.severity_rank <= alert.notified_rank:
        return
    if _silenced(alert, now):
        return
    event = NotificationEvent.RAISED if alert.notified_rank == 0 else NotificationEvent.ESCALATED
    alert.notified_rank = alert.severity_rank
    alert.save(update_fields=["notified_rank", "updated_at"])
    notification_queue(alert, event)


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: User, note: str = "") -> Alert:
    """Ops have seen it: open -> acknowledged, with who, when and why."""
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if not alert.is_active:
        raise AlertNotActive("A resolved alert cannot be acknowledged.")
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = by
    alert.acknowledged_at = timezone.now()
    alert.acknowledgement_note = note
    alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "acknowledgement_note", "updated_at"])
    logger.info("alert acknowledged %s/%s by %s", alert.component, alert.condition, by.get_username(),
                extra={"category": "alert_acknowledged", "alert_id": alert.pk, "by": by.get_username()})
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, by: User | None = None, note: str = "",
                  now: datetime | None = None) -> Alert:
    """Closes the alert; a resolution is notified wherever its raising was."""
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if not alert.is_active:
        return alert
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = now or timezone.now()
    alert.resolved_by = by
    alert.resolution_note = note
    alert.streak = 0
    notified = alert.notified_rank >= SEVERITY_RANK[Severity.ERROR]
    alert.notified_rank = 0
    alert.save()
    logger.info(
        "alert resolved %s/%s: %s", alert.component, alert.condition, note or "by hand",
        extra={"category": "alert_resolved", "alert_id": alert.pk, "component": alert.component,
               "condition": alert.condition, "severity": alert.severity,
               "by": by.get_username() if by is not None else None},
    )
    if notified:
        notification_queue(alert, NotificationEvent.RESOLVED)
    return alert


def alert_silence(*, by: User, reason: str, ends_at: datetime, component: str = "",
                  condition: str = "", starts_at: datetime | None = None) -> Silence:
    """Mutes notifications for a component and/or condition during a window; alerts are still recorded."""
    starts_at = starts_at or timezone.now()
    if not reason.strip():
        raise ValidationError({"reason": "Say why the alerts are silenced."})
    if not (component or condition):
        raise ValidationError("Name a component, a condition, or both.")
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": "The silence must end after it starts."})
    silence = Silence.objects.create(component=component, condition=condition, starts_at=starts_at,
                                     ends_at=ends_at, reason=reason.strip(), created_by=by)
    logger.info("alerts silenced %s/%s until %s by %s", component or "*", condition or "*", ends_at.isoformat(),
                by.get_username(), extra={"category": "alert_silenced", "silence_id": silence.pk,
                                          "by": by.get_username(), "reason": silence.reason})
    return silence


def alert_silence_end(*, silence: Silence, by: User) -> Silence:
    now = timezone.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at + timedelta(microseconds=1))
        silence.save(update_fields=["ends_at"])
        logger.info("silence %s ended by %s", silence.pk, by.get_username(),
                    extra={"category": "alert_silence_ended", "silence_id": silence.pk})
    return silence
