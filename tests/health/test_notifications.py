"""Notifications for new error/critical alerts and their resolution: e-mail (locmem) and a
webhook (a loopback receiver), sent by a task after commit, once per channel."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from health.checks.base import Problem, Reading
from health.models import Alert, AlertNotification
from health.services.alerts import alert_resolve, alert_silence, alert_silence_end
from health.services.runs import health_check_run
from tests.health.conftest import StubCheck

pytestmark = pytest.mark.django_db(transaction=True)


def redis_down() -> StubCheck:
    return StubCheck("redis", Reading(status="down", problems=[Problem("unreachable", "error", "redis unreachable")]))


def redis_ok() -> StubCheck:
    return StubCheck("redis")


@pytest.fixture
def channels(settings, webhook, eager_tasks):  # type: ignore[no-untyped-def]
    settings.ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    settings.ALERT_WEBHOOK_URL = webhook.url
    return webhook


def test_a_new_error_alert_is_mailed_and_posted_once(channels, mailoutbox, ticker) -> None:
    health_check_run(now=ticker(), checks=[redis_down()])
    health_check_run(now=ticker(), checks=[redis_down()])  # a repeat is not news
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.subject == "[payops] ERROR redis/unreachable raised"
    assert mail.to == ["ops@example.com", "oncall@example.com"]
    assert "redis unreachable" in mail.body
    posts = channels.wait_for(1)
    assert len(posts) == 1
    body = posts[0]["json"]
    assert body["event"] == "raised"
    assert body["alert"]["component"] == "redis" and body["alert"]["severity"] == "error"
    notification = AlertNotification.objects.get()
    assert notification.email_sent_at and notification.webhook_sent_at and notification.last_error == ""


def test_warnings_are_not_notified(channels, mailoutbox, ticker) -> None:
    health_check_run(now=ticker(), checks=[StubCheck("database", Reading(utilisation={"pool_utilisation": 85}))])
    assert Alert.objects.get().severity == "warning"
    assert mailoutbox == [] and not AlertNotification.objects.exists()


def test_escalation_and_resolution_are_notified(channels, mailoutbox, settings, ticker) -> None:
    settings.ALERT_ESCALATE_AFTER = 1
    health_check_run(now=ticker(), checks=[redis_down()])
    health_check_run(now=ticker(), checks=[redis_down()])  # beyond one check: critical
    health_check_run(now=ticker(), checks=[redis_down()])
    for _ in range(2):
        health_check_run(now=ticker(), checks=[redis_ok()])
    assert [m.subject for m in mailoutbox] == [
        "[payops] ERROR redis/unreachable raised",
        "[payops] CRITICAL redis/unreachable escalated",
        "[payops] CRITICAL redis/unreachable resolved",
    ]
    assert [p["json"]["event"] for p in channels.wait_for(3)] == ["raised", "escalated", "resolved"]


def test_a_reopened_alert_is_notified_again(channels, mailoutbox, ticker) -> None:
    health_check_run(now=ticker(), checks=[redis_down()])
    for _ in range(2):
        health_check_run(now=ticker(), checks=[redis_ok()])
    health_check_run(now=ticker(), checks=[redis_down()])
    assert [m.subject.split()[-1] for m in mailoutbox] == ["raised", "resolved", "raised"]


def test_a_silence_mutes_notifications_but_the_alert_is_recorded(channels, mailoutbox, staff, ticker) -> None:
    silence = alert_silence(by=staff, reason="redis failover drill", component="redis",
                            ends_at=timezone.now() + timedelta(hours=1))
    health_check_run(now=ticker(), checks=[redis_down()])
    alert = Alert.objects.get()
    assert alert.status == "open" and alert.severity == "error"
    assert mailoutbox == [] and channels.received == []
    # Still there after the silence: now it is news.
    alert_silence_end(silence=silence, by=staff)
    health_check_run(now=timezone.now() + timedelta(seconds=1), checks=[redis_down()])
    assert [m.subject.split()[-1] for m in mailoutbox] == ["raised"]


def test_a_silence_on_another_condition_does_not_mute(channels, mailoutbox, staff, ticker) -> None:
    alert_silence(by=staff, reason="tuning", component="redis", condition="slow",
                  ends_at=timezone.now() + timedelta(hours=1))
    health_check_run(now=ticker(), checks=[redis_down()])
    assert len(mailoutbox) == 1


def test_a_failed_webhook_is_retried_without_mailing_twice(channels, mailoutbox, ticker) -> None:
    channels.status = 500
    original = channels.server.RequestHandlerClass.do_POST

    def fail_once(handler) -> None:  # type: ignore[no-untyped-def]
        original(handler)
        channels.status = 200

    channels.server.RequestHandlerClass.do_POST = fail_once
    health_check_run(now=ticker(), checks=[redis_down()])
    assert len(channels.wait_for(2)) == 2
    assert len(mailoutbox) == 1
    notification = AlertNotification.objects.get()
    assert notification.attempts == 2 and notification.webhook_sent_at is not None


def test_a_manual_resolution_of_a_notified_alert_is_notified(channels, mailoutbox, staff, ticker) -> None:
    health_check_run(now=ticker(), checks=[redis_down()])
    alert_resolve(alert=Alert.objects.get(), by=staff, note="restarted redis")
    assert mailoutbox[-1].subject == "[payops] ERROR redis/unreachable resolved"
    assert "restarted redis" in mailoutbox[-1].body


def test_sending_never_blocks_the_check_and_the_webhook_url_is_never_logged(settings, webhook, caplog,
                                                                            ticker) -> None:
    caplog.set_level(logging.DEBUG)
    webhook.delay = 3.0
    settings.ALERT_WEBHOOK_URL = webhook.url + "?token=s3cr3t-hook-token"
    started = time.monotonic()
    health_check_run(now=ticker(), checks=[redis_down()])
    assert time.monotonic() - started < 1.0  # queued after commit, not sent in the run
    assert AlertNotification.objects.get().event == "raised"
    assert "s3cr3t-hook-token" not in caplog.text


def test_the_dead_mans_switch_is_sent_by_the_web_process_not_a_worker(client, settings, webhook, mailoutbox,
                                                                      ticker) -> None:
    # No eager tasks, and nothing here consumes the queue: only this process can deliver it.
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = webhook.url
    settings.HEALTH_CHECK_INTERVAL = 30
    health_check_run(now=timezone.now() - timedelta(seconds=120), checks=[redis_ok()])
    assert client.get("/health/status").json() == {"status": "stale"}
    posts = webhook.wait_for(1, timeout=5)
    assert [p["json"]["alert"]["condition"] for p in posts] == ["stale"]
    assert posts[0]["json"]["alert"]["severity"] == "critical"
    assert [m.subject for m in mailoutbox] == ["[payops] CRITICAL health/stale raised"]


def _lost_notification(*, minutes_ago: float, condition: str = "unreachable") -> AlertNotification:
    """What a notification whose task never ran looks like: written with its alert, never attempted."""
    now = timezone.now()
    alert = Alert.objects.create(component="redis", condition=condition, severity="error", severity_rank=30,
                                 message=f"redis {condition}", first_seen=now, last_seen=now, notified_rank=30)
    notification = AlertNotification.objects.create(alert=alert, event="raised", severity="error")
    AlertNotification.objects.filter(pk=notification.pk).update(
        created_at=now - timedelta(minutes=minutes_ago))
    return notification


def test_a_notification_whose_task_was_lost_is_sent_by_a_later_health_run_once(channels, mailoutbox,
                                                                               caplog) -> None:
    lost = _lost_notification(minutes_ago=3)
    recent = _lost_notification(minutes_ago=0.5, condition="slow")  # its task may still be on its way
    health_check_run(now=timezone.now(), checks=[StubCheck("celery")])
    assert [m.subject for m in mailoutbox] == ["[payops] ERROR redis/unreachable raised"]
    assert len(channels.wait_for(1)) == 1
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert lost.attempts == 1 and lost.email_sent_at and lost.webhook_sent_at and lost.claimed_until is None
    assert recent.attempts == 0
    assert f"alert notification {lost.pk} never attempted" in caplog.text
    health_check_run(now=timezone.now() + timedelta(seconds=30), checks=[StubCheck("celery")])
    assert len(mailoutbox) == 1 and len(channels.received) == 1


def test_a_notification_another_sender_holds_is_not_sent_twice(channels, mailoutbox) -> None:
    from health.services.notifications import alert_notification_send

    notification = _lost_notification(minutes_ago=3)
    AlertNotification.objects.filter(pk=notification.pk).update(
        claimed_until=timezone.now() + timedelta(seconds=60))
    assert alert_notification_send(notification_id=notification.pk) is None
    health_check_run(now=timezone.now(), checks=[StubCheck("celery")])  # held: not queued again
    assert mailoutbox == [] and channels.received == []
    AlertNotification.objects.filter(pk=notification.pk).update(claimed_until=None)  # the holder died
    assert alert_notification_send(notification_id=notification.pk).attempts == 1
    # The original task, slow rather than lost, runs after its resend: nothing is sent again.
    assert alert_notification_send(notification_id=notification.pk).attempts == 1
    assert len(mailoutbox) == 1 and len(channels.wait_for(1)) == 1
