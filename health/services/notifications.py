"""Alert notifications: queued after commit, sent once per channel by e-mail and signed webhook,
resent when their task never ran."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import connections, transaction
from django.utils import timezone

from config.http.outbound import get_outbound
from health.models import (
    Alert,
    AlertNotification,
)
from health.signing import webhook_signed

logger = logging.getLogger(__name__)


WEBHOOK_TIMEOUT = 10.0  # s


# A notification with no attempt this long after it was written lost its task (a Redis outage
# when it was queued, or a task in transit when the connection broke): the health run sends it
# again. Older ones are news nobody needs any more.
NOTIFY_RESEND_AFTER = timedelta(minutes=2)


NOTIFY_RESEND_WITHIN = timedelta(hours=1)


SELF_COMPONENT = "health"  # alerts about the health checks themselves (the dead-man's switch)


class NotificationFailed(Exception):
    pass


def notification_queue(alert: Alert, event: str) -> None:
    notification = AlertNotification.objects.create(alert=alert, event=event, severity=alert.severity)
    if alert.component == SELF_COMPONENT:
        # The dead-man's switch trips when the workers may be what stopped: it cannot count on
        # them to deliver its news, so this process sends it, off the caller's thread.
        transaction.on_commit(lambda: threading.Thread(
            target=in_own_connection, args=(lambda: _notification_send_quietly(notification.pk),),
            name="health-notify", daemon=True).start())
        return
    # After commit, so the task finds the row and the check never waits for a mail server.
    transaction.on_commit(lambda: _notification_enqueue(notification.pk))


def _notification_enqueue(notification_id: int) -> None:
    from health.tasks import alert_notify

    try:
        # One try, bounded by the broker's socket timeouts (a breaker alert is raised in the
        # request that tripped the breaker); a notification not queued is sent again by a
        # later health run (alert_notifications_resend).
        alert_notify.apply_async((notification_id,), retry=False)
    except Exception:  # noqa: BLE001 - the broker away must not fail the alert; the resend covers it
        logger.warning("alert notification %s not queued", notification_id,
                       extra={"category": "alert_notify_queue_error", "notification_id": notification_id})


def _notification_send_quietly(notification_id: int) -> None:
    try:
        alert_notification_send(notification_id=notification_id)
    except NotificationFailed:
        # Logged and recorded on the row; the queue's retries (with backoff) take it from here,
        # and run as soon as a worker is back.
        _notification_enqueue(notification_id)


def in_own_connection(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001 - off the caller's thread: nothing else would catch it
        logger.exception("alert work off the caller's thread failed", extra={"category": "alert_error"})
    finally:
        connections.close_all()


# --- Notifications ----------------------------------------------------------------------------
def alert_notifications_resend(*, now: datetime) -> int:
    """Queues again the notifications whose task never ran (see NOTIFY_RESEND_AFTER); each is
    queued after commit and sent once per channel whatever else runs."""
    lost = list(AlertNotification.objects.filter(
        attempts=0, created_at__lt=now - NOTIFY_RESEND_AFTER, created_at__gte=now - NOTIFY_RESEND_WITHIN,
    ).exclude(claimed_until__gte=now).values_list("pk", flat=True))
    for pk in lost:
        logger.warning("alert notification %s never attempted: queued again", pk,
                       extra={"category": "alert_notify_resent", "notification_id": pk})
        transaction.on_commit(functools.partial(_notification_enqueue, pk))
    return len(lost)


def _notification_claim(notification_id: int) -> bool:
    now = timezone.now()
    hold = timedelta(seconds=settings.EMAIL_TIMEOUT + WEBHOOK_TIMEOUT + 30)
    return bool(AlertNotification.objects.filter(pk=notification_id)
                .exclude(claimed_until__gte=now).update(claimed_until=now + hold))


def alert_notification_send(*, notification_id: int) -> AlertNotification | None:
    """Sends one notification by e-mail (ALERT_EMAILS) and webhook (ALERT_WEBHOOK_URL); a channel
    already sent is never sent again, so a retried task repeats only what failed. One sender at
    a time (a claim on the row): None when the row is gone or another sender holds it."""
    if not _notification_claim(notification_id):
        return None
    notification = AlertNotification.objects.select_related("alert").get(pk=notification_id)
    pending_email = bool(settings.ALERT_EMAILS) and notification.email_sent_at is None
    pending_webhook = bool(settings.ALERT_WEBHOOK_URL) and notification.webhook_sent_at is None
    if not (pending_email or pending_webhook) and notification.attempts:
        # A resent copy of a task that did run after all: nothing left to do.
        AlertNotification.objects.filter(pk=notification.pk).update(claimed_until=None)
        return notification
    alert = notification.alert
    errors = []
    if settings.ALERT_EMAILS and notification.email_sent_at is None:
        try:
            subject, body = _email_text(notification)
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS, fail_silently=False)
        except Exception as exc:  # noqa: BLE001 - any mail failure is recorded and retried
            errors.append(f"email: {exc.__class__.__name__}")
        else:
            notification.email_sent_at = timezone.now()
    if settings.ALERT_WEBHOOK_URL and notification.webhook_sent_at is None:
        try:
            signed, headers = webhook_signed(payload=_webhook_body(notification), secret=settings.ALERT_WEBHOOK_SECRET)
            response = get_outbound().request("POST", settings.ALERT_WEBHOOK_URL, data=signed, headers=headers,
                                              timeout=WEBHOOK_TIMEOUT)
            if not 200 <= response.status_code < 300:
                raise NotificationFailed(f"answered {response.status_code}")
        except Exception as exc:  # noqa: BLE001 - any webhook failure is recorded and retried
            errors.append(f"webhook: {exc.__class__.__name__} {exc if isinstance(exc, NotificationFailed) else ''}")
        else:
            notification.webhook_sent_at = timezone.now()
    notification.attempts += 1
    notification.last_error = "; ".join(e.strip() for e in errors)[:300]
    notification.claimed_until = None
    notification.save(update_fields=["email_sent_at", "webhook_sent_at", "attempts", "last_error", "claimed_until"])
    extra = {"alert_id": alert.pk, "notification_id": notification.pk, "event": notification.event,
             "severity": notification.severity}
    if errors:
        logger.warning("alert notification failed: %s", notification.last_error,
                       extra={"category": "alert_notify_failed", **extra})
        raise NotificationFailed(notification.last_error)
    logger.info("alert notification sent: %s %s/%s", notification.event, alert.component, alert.condition,
                extra={"category": "alert_notified", **extra})
    return notification


def _email_text(notification: AlertNotification) -> tuple[str, str]:
    alert = notification.alert
    subject = f"[payops] {notification.severity.upper()} {alert.component}/{alert.condition} {notification.event}"
    lines = [
        alert.message, "",
        f"Status: {alert.status}", f"Severity: {notification.severity}",
        f"First seen: {alert.first_seen.isoformat()}", f"Last seen: {alert.last_seen.isoformat()}",
        f"Occurrences: {alert.occurrences}",
    ]
    if alert.payments_in_flight is not None:
        lines.append(f"Payments affected: {alert.payments_in_flight} {alert.amount_affected}")
    if alert.resolved_at:
        lines.append(f"Resolved: {alert.resolved_at.isoformat()} {alert.resolution_note}")
    return subject, "\n".join(lines)


def _webhook_body(notification: AlertNotification) -> dict[str, Any]:
    alert = notification.alert
    return {
        "service": "payops",
        "event": notification.event,
        "notification_id": notification.pk,
        "alert": {
            "id": alert.pk, "component": alert.component, "condition": alert.condition,
            "severity": notification.severity, "status": alert.status, "message": alert.message,
            "first_seen": alert.first_seen.isoformat(), "last_seen": alert.last_seen.isoformat(),
            "occurrences": alert.occurrences, "payments_in_flight": alert.payments_in_flight,
            "amount_affected": alert.amount_affected,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
    }
