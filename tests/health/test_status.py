"""/health/status: the overall status for anyone, details for staff or a token, and the
dead-man's switch when runs stop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from health.checks.base import Problem, Reading
from health.models import Alert, HealthCheckRun
from health.selectors import health_staleness
from health.services.alerts import alert_silence
from health.services.runs import health_check_run
from health.services.switch import health_stale_alert
from tests.health.conftest import StubCheck

pytestmark = pytest.mark.django_db(transaction=True)


def degraded_run(now=None) -> HealthCheckRun:  # type: ignore[no-untyped-def]
    checks = [
        StubCheck("database", Reading(utilisation={"pool_utilisation": 85.0}, figures={"in_use": 17, "max": 20})),
        StubCheck("redis", Reading(figures={"latency_ms": 0.4})),
    ]
    return health_check_run(now=now or timezone.now(), checks=checks)


def test_anonymous_callers_get_the_overall_status_only(client) -> None:
    degraded_run()
    response = client.get("/health/status")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_staff_see_components_alerts_and_staleness(client, staff) -> None:
    run = degraded_run()
    client.force_login(staff)
    body = client.get("/health/status").json()
    assert body["status"] == "degraded" and body["stale"] is False
    assert body["checked_at"] == run.started_at.isoformat()
    assert body["components"]["database"]["utilisation_pct"] == 85.0
    assert body["components"]["database"]["in_use"] == 17 and body["components"]["database"]["max"] == 20
    assert body["components"]["redis"]["status"] == "ok"
    assert body["alert_counts"] == {"critical": 0, "error": 0, "warning": 1, "info": 0}
    assert body["alerts"]["warning"][0]["condition"] == "pool_utilisation"


def test_a_non_staff_session_gets_the_overall_status_only(client, django_user_model) -> None:
    degraded_run()
    client.force_login(django_user_model.objects.create_user(username="someone", password="pw-someone-1"))
    assert client.get("/health/status").json() == {"status": "degraded"}


def test_the_status_token_unlocks_details_and_a_wrong_one_is_refused(client, settings) -> None:
    settings.HEALTH_STATUS_TOKEN = "monitor-token-0123456789"
    degraded_run()
    body = client.get("/health/status", HTTP_AUTHORIZATION="Bearer monitor-token-0123456789").json()
    assert "components" in body
    wrong = client.get("/health/status", HTTP_AUTHORIZATION="Bearer guess")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"
    settings.HEALTH_STATUS_TOKEN = ""
    assert client.get("/health/status", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_silenced_alerts_are_left_out_of_the_counts(client, staff) -> None:
    degraded_run()
    alert_silence(by=staff, reason="load test", component="database", ends_at=timezone.now() + timedelta(hours=1))
    client.force_login(staff)
    assert client.get("/health/status").json()["alert_counts"]["warning"] == 0


def test_before_any_run_the_status_is_unknown(client) -> None:
    assert client.get("/health/status").json() == {"status": "unknown"}
    assert health_staleness().stale is True
    assert not Alert.objects.exists()  # nothing to compare with: the switch is not armed yet


def test_no_run_for_three_intervals_is_stale_and_raises_one_critical_alert(client, settings, staff) -> None:
    settings.HEALTH_CHECK_INTERVAL = 30
    degraded_run(now=timezone.now() - timedelta(seconds=95))
    staleness = health_staleness()
    assert staleness.stale and staleness.age_seconds >= 95 and staleness.limit_seconds == 90
    assert client.get("/health/status").json() == {"status": "stale"}
    client.get("/health/status")
    alert = Alert.objects.get(component="health", condition="stale")
    assert (alert.severity, alert.status, alert.occurrences) == ("critical", "open", 1)
    client.force_login(staff)
    body = client.get("/health/status").json()
    assert body["stale"] is True and body["alert_counts"]["critical"] == 1
    # The next run is the proof the switch waits for.
    health_check_run(checks=[StubCheck("redis")])
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert client.get("/health/status").json()["status"] == "ok"


def test_a_process_that_read_the_old_run_does_not_reopen_the_switch_a_new_run_just_resolved(client, settings) -> None:
    # Seen in CI: a web process looked (stale), a run landed and resolved the alert, then the
    # process tripped the switch on what it had read and paged ops a second time.
    settings.HEALTH_CHECK_INTERVAL = 30
    degraded_run(now=timezone.now() - timedelta(seconds=95))
    looked = health_staleness()
    assert looked.stale
    alert = health_stale_alert(staleness=looked)
    assert alert is not None
    health_check_run(checks=[StubCheck("redis")])
    assert health_stale_alert(staleness=looked) is None
    alert.refresh_from_db()
    assert (alert.status, alert.reopened) == ("resolved", 0)
    assert Alert.objects.filter(component="health", condition="stale").count() == 1


def test_a_run_two_intervals_old_is_not_stale(client, settings) -> None:
    settings.HEALTH_CHECK_INTERVAL = 30
    health_check_run(now=timezone.now() - timedelta(seconds=60), checks=[StubCheck("redis")])
    assert client.get("/health/status").json() == {"status": "ok"}
    assert not Alert.objects.exists()


def test_a_down_component_makes_the_overall_status_down(client) -> None:
    health_check_run(checks=[StubCheck("database", Reading(status="down", problems=[Problem("unreachable", "error",
                                                                                            "away")]))])
    assert client.get("/health/status").json() == {"status": "down"}


def test_redis_down_makes_the_overall_status_degraded_only(client) -> None:
    # Payments go on without Redis (rate limit and breaker fall back to each process).
    health_check_run(checks=[StubCheck("redis", Reading(status="down", problems=[Problem("unreachable", "error",
                                                                                         "away")]))])
    assert client.get("/health/status").json() == {"status": "degraded"}
