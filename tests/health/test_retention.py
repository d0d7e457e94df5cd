"""Alert notifications and drill runs are kept as long as the snapshots, then pruned in batches;
the daily task beat sends prunes them with the history."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from config import ticks
from health.models import Alert, AlertNotification, DrillRun
from health.retention import alert_notifications_prune, drill_runs_prune
from health.tasks import health_history_prune as prune_task

pytestmark = pytest.mark.django_db


def _alert() -> Alert:
    now = timezone.now()
    return Alert.objects.create(component="redis", condition=f"down-{uuid.uuid4().hex[:6]}", severity="error",
                                severity_rank=30, message="redis down", first_seen=now, last_seen=now)


def _age(model, pks, days: float) -> None:  # type: ignore[no-untyped-def]
    # created_at is auto_now_add: age rows the way time would, with an UPDATE.
    model.objects.filter(pk__in=pks).update(created_at=timezone.now() - timedelta(days=days))


def test_notifications_past_the_retention_days_are_deleted_in_batches_and_their_alert_stays(settings) -> None:
    settings.HEALTH_RETENTION_DAYS = 7
    alert = _alert()
    old = [AlertNotification.objects.create(alert=alert, event="raised", severity="error").pk for _ in range(25)]
    recent = [AlertNotification.objects.create(alert=alert, event="resolved", severity="error").pk for _ in range(3)]
    _age(AlertNotification, old, days=8)
    _age(AlertNotification, recent, days=6)

    assert alert_notifications_prune(batch=10) == 25
    assert sorted(AlertNotification.objects.values_list("pk", flat=True)) == sorted(recent)
    assert Alert.objects.filter(pk=alert.pk).exists()


def test_finished_drill_runs_past_the_retention_days_are_deleted_and_an_active_one_stays(settings) -> None:
    settings.HEALTH_RETENTION_DAYS = 7
    deadline = timezone.now()
    finished = [DrillRun.objects.create(kind="log_test", status=status, deadline_at=deadline).pk
                for status in ("succeeded", "failed", "succeeded")]
    running = DrillRun.objects.create(kind="db_pool", status="running", deadline_at=deadline).pk
    recent = DrillRun.objects.create(kind="log_test", status="succeeded", deadline_at=deadline).pk
    _age(DrillRun, [*finished, running], days=10)

    assert drill_runs_prune(batch=2) == 3
    assert sorted(DrillRun.objects.values_list("pk", flat=True)) == sorted([running, recent])


def test_the_daily_task_prunes_notifications_and_drill_runs_with_the_history(settings) -> None:
    settings.HEALTH_RETENTION_DAYS = 7
    alert = _alert()
    notification = AlertNotification.objects.create(alert=alert, event="raised", severity="error").pk
    drill = DrillRun.objects.create(kind="log_test", status="succeeded", deadline_at=timezone.now()).pk
    _age(AlertNotification, [notification], days=30)
    _age(DrillRun, [drill], days=30)

    done = prune_task.apply(headers=ticks.beat_headers("health-prune", 60.0), task_id=str(uuid.uuid4())).get()
    assert done["notifications"] == 1 and done["drill_runs"] == 1
    assert not AlertNotification.objects.exists() and not DrillRun.objects.exists()
