"""Alert rules over runs: dedup, severity in place, escalation, hysteresis, reopen, acknowledge,
silence. The readings are set by the test; real saturation is in test_saturation.py."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from health.checks.base import Problem, Reading
from health.models import Alert, AlertNotification, HealthCheckRun
from health.services.alerts import alert_acknowledge, alert_raise, alert_resolve, alert_silence
from health.services.breaker_alerts import alert_from_breaker_transition
from health.services.runs import health_check_run
from payments.gateway.breaker.policy import BreakerSnapshot
from tests.health.conftest import StubCheck
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def pool_at(percent: float) -> StubCheck:
    return StubCheck("database", Reading(utilisation={"pool_utilisation": percent}))


def failing(condition: str = "unreachable", severity: str = "error") -> StubCheck:
    return StubCheck("redis", Reading(status="down" if condition == "unreachable" else "degraded",
                                      problems=[Problem(condition, severity, f"redis {condition}")]))


def healthy(name: str = "redis") -> StubCheck:
    return StubCheck(name, Reading())


def test_repeats_bump_one_alert_and_severity_moves_in_place(ticker) -> None:
    first = ticker()
    health_check_run(now=first, checks=[pool_at(85)])
    health_check_run(now=ticker(), checks=[pool_at(86)])
    health_check_run(now=ticker(), checks=[pool_at(95)])
    alert = Alert.objects.get()
    assert (alert.component, alert.condition) == ("database", "pool_utilisation")
    assert alert.severity == "critical" and alert.severity_rank == 40
    assert alert.occurrences == 3
    assert alert.first_seen == first and alert.last_seen == ticker.now
    assert "95%" in alert.message
    health_check_run(now=ticker(), checks=[pool_at(82)])
    alert.refresh_from_db()
    assert alert.severity == "warning" and alert.status == "open"
    assert Alert.objects.count() == 1


def test_thresholds_are_strictly_above(ticker) -> None:
    health_check_run(now=ticker(), checks=[pool_at(80)])
    assert not Alert.objects.exists()
    health_check_run(now=ticker(), checks=[pool_at(90)])
    assert Alert.objects.get().severity == "warning"


def test_a_value_hovering_at_the_threshold_does_not_flap(ticker) -> None:
    for value in (81, 79, 81, 78, 81, 79, 76):
        health_check_run(now=ticker(), checks=[pool_at(value)])
    alert = Alert.objects.get()
    assert alert.status == "open"
    assert alert.occurrences == 7
    assert alert.reopened == 0


def test_clears_only_after_two_checks_below_threshold_minus_margin(ticker) -> None:
    health_check_run(now=ticker(), checks=[pool_at(92)])
    health_check_run(now=ticker(), checks=[pool_at(86)])  # critical keeps within 5 points
    alert = Alert.objects.get()
    assert alert.severity == "critical"
    health_check_run(now=ticker(), checks=[pool_at(70)])
    alert.refresh_from_db()
    assert alert.status == "open" and alert.absent_checks == 1
    health_check_run(now=ticker(), checks=[pool_at(70)])
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.resolved_at == ticker.now
    assert alert.resolved_by is None and "2 consecutive" in alert.resolution_note


def test_one_present_check_resets_the_absence_count(ticker) -> None:
    health_check_run(now=ticker(), checks=[failing()])
    health_check_run(now=ticker(), checks=[healthy()])
    health_check_run(now=ticker(), checks=[failing()])
    health_check_run(now=ticker(), checks=[healthy()])
    assert Alert.objects.get().status == "open"
    health_check_run(now=ticker(), checks=[healthy()])
    assert Alert.objects.get().status == "resolved"


def test_an_error_that_persists_becomes_critical(settings, ticker) -> None:
    settings.ALERT_ESCALATE_AFTER = 3
    severities = []
    for _ in range(5):
        health_check_run(now=ticker(), checks=[failing()])
        severities.append(Alert.objects.get().severity)
    assert severities == ["error", "error", "error", "critical", "critical"]
    assert "for 4 checks" in Alert.objects.get().message or "for 5 checks" in Alert.objects.get().message


def test_a_gateway_error_while_payments_sit_unsettled_is_critical_at_once(ticker) -> None:
    gateway = StubCheck("gateway", Reading(status="down", problems=[Problem("unreachable", "error", "probe failed")]))
    payments = StubCheck("payments", Reading(problems=[Problem("unknown_overdue", "error", "3 payments unsettled")],
                                             figures={"in_flight": {"count": 7, "amounts": {"usd": 7000}}}))
    health_check_run(now=ticker(), checks=[gateway, payments])
    alert = Alert.objects.get(component="gateway")
    assert alert.severity == "critical"
    assert Alert.objects.get(component="payments").payments_in_flight == 7


def test_an_alert_carries_the_payments_its_component_affected_while_open(ticker) -> None:
    """A gateway alert counts the payments left unfinished while it lasted (shed, unknown), by
    currency; a Redis memory warning at the same time carries no payment numbers at all."""
    from payments.models import Payment
    from tests.payments.factories import make_client

    client, _ = make_client()
    gateway = StubCheck("gateway", Reading(status="down", problems=[Problem("unreachable", "error", "probe failed")]))
    redis = StubCheck("redis", Reading(status="degraded", problems=[Problem("memory", "warning", "85 % of maxmemory")]))
    health_check_run(now=ticker(), checks=[gateway, redis])
    for i, (status, amount, currency) in enumerate([("unknown", 1250, "eur"), ("pending", 500, "eur"),
                                                      ("pending", 900, "jpy"), ("succeeded", 7000, "eur")]):
        Payment.objects.create(client=client, idempotency_key=f"k{i}", request_hash="h", amount=amount,
                               currency=currency, payment_method="pm_card_visa", status=status)
    Payment.objects.update(created=ticker.now)  # made while the alert was open, on the runs' clock
    health_check_run(now=ticker(), checks=[gateway, redis])
    alert = Alert.objects.get(component="gateway")
    assert (alert.payments_in_flight, alert.amount_affected) == (3, {"eur": 1750, "jpy": 900})
    memory = Alert.objects.get(component="redis")
    assert (memory.payments_in_flight, memory.amount_affected) == (None, {})


def test_a_condition_back_after_resolution_reopens_the_same_alert(ticker) -> None:
    health_check_run(now=ticker(), checks=[failing()])
    for _ in range(2):
        health_check_run(now=ticker(), checks=[healthy()])
    alert = Alert.objects.get()
    assert alert.status == "resolved"
    health_check_run(now=ticker(), checks=[failing()])
    reopened = Alert.objects.get()
    assert reopened.pk == alert.pk
    assert reopened.status == "open" and reopened.reopened == 1 and reopened.resolved_at is None
    assert reopened.occurrences == 2


def test_a_condition_back_long_after_opens_a_new_alert(ticker) -> None:
    health_check_run(now=ticker(), checks=[failing()])
    for _ in range(2):
        health_check_run(now=ticker(), checks=[healthy()])
    ticker.now += timedelta(hours=2)
    health_check_run(now=ticker(), checks=[failing()])
    assert list(Alert.objects.order_by("pk").values_list("status", flat=True)) == ["resolved", "open"]


def test_only_one_active_alert_per_component_and_condition_even_when_raised_directly() -> None:
    alert_raise(component="redis", condition="slow", severity="warning", message="slow")
    alert_raise(component="redis", condition="slow", severity="warning", message="slow again")
    alert_raise(component="redis", condition="memory", severity="warning", message="memory")
    assert Alert.objects.filter(component="redis", condition="slow").count() == 1
    assert Alert.objects.get(condition="slow").occurrences == 2
    assert Alert.objects.count() == 2


def test_acknowledge_records_who_and_a_worse_severity_needs_eyes_again(staff, ticker) -> None:
    health_check_run(now=ticker(), checks=[pool_at(85)])
    alert = alert_acknowledge(alert=Alert.objects.get(), by=staff, note="scaling web")
    assert alert.status == "acknowledged" and alert.acknowledged_by == staff
    assert alert.acknowledgement_note == "scaling web" and alert.acknowledged_at is not None
    health_check_run(now=ticker(), checks=[pool_at(85)])
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.occurrences == 2
    health_check_run(now=ticker(), checks=[pool_at(95)])
    alert.refresh_from_db()
    assert alert.status == "open" and alert.severity == "critical"


def test_a_resolved_alert_cannot_be_acknowledged(staff) -> None:
    alert = alert_raise(component="redis", condition="slow", severity="warning", message="slow")
    alert_resolve(alert=alert, by=staff, note="fixed")
    with pytest.raises(ValidationError):
        alert_acknowledge(alert=alert, by=staff)
    alert.refresh_from_db()
    assert alert.resolved_by == staff and alert.resolution_note == "fixed"


def test_an_unobserved_component_keeps_its_alerts(ticker) -> None:
    health_check_run(now=ticker(), checks=[failing()])
    for _ in range(3):
        health_check_run(now=ticker(), checks=[healthy("database")])
    assert Alert.objects.get().status == "open"


def test_a_down_component_keeps_its_pool_alerts_unmeasured(ticker) -> None:
    health_check_run(now=ticker(), checks=[pool_at(95)])
    down = StubCheck("database", Reading(status="down", problems=[Problem("unreachable", "error", "db away")]))
    for _ in range(3):
        health_check_run(now=ticker(), checks=[down])
    assert Alert.objects.get(condition="pool_utilisation").status == "open"
    assert Alert.objects.get(condition="unreachable").status == "open"


def test_silence_is_recorded_with_who_and_why_and_validated(staff) -> None:
    now = timezone.now()
    silence = alert_silence(by=staff, reason="planned failover", component="database",
                            ends_at=now + timedelta(hours=1))
    assert silence.created_by == staff and silence.reason == "planned failover"
    with pytest.raises(ValidationError):
        alert_silence(by=staff, reason=" ", component="database", ends_at=now + timedelta(hours=1))
    with pytest.raises(ValidationError):
        alert_silence(by=staff, reason="x", ends_at=now + timedelta(hours=1))
    with pytest.raises(ValidationError):
        alert_silence(by=staff, reason="x", component="redis", ends_at=now - timedelta(seconds=1))


def test_every_alert_change_is_logged_with_its_category(caplog, staff, ticker) -> None:
    caplog.set_level(logging.INFO, logger="health.services")
    health_check_run(now=ticker(), checks=[pool_at(85)])
    health_check_run(now=ticker(), checks=[pool_at(95)])
    alert_acknowledge(alert=Alert.objects.get(), by=staff)
    alert_resolve(alert=Alert.objects.get(), by=staff)
    categories = [getattr(r, "category", None) for r in caplog.records]
    for category in ("alert_raised", "alert_severity_changed", "alert_acknowledged", "alert_resolved"):
        assert category in categories


def snapshot(state: str, *, forced: dict | None = None) -> BreakerSnapshot:
    return BreakerSnapshot(name="gateway", state=state, calls=12, failures=9, failure_rate=0.75, opened_at=None,
                           retry_after=30.0, forced=forced, shared=True)


def test_breaker_transitions_open_and_resolve_the_circuit_alert() -> None:
    alert_from_breaker_transition(old="closed", new="open", snapshot=snapshot("open"))
    # Written before the call returns: a test (or a process) ending right after it leaves no thread behind.
    alert = Alert.objects.get(component="gateway", condition="circuit_open")
    assert alert.severity == "error" and alert.status == "open"
    assert "9 of 12 calls failed" in alert.message
    alert_from_breaker_transition(old="half_open", new="closed", snapshot=snapshot("closed"))
    assert Alert.objects.get(pk=alert.pk).status == "resolved"


def test_a_breaker_alert_survives_the_rollback_of_the_callers_transaction() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        alert_from_breaker_transition(old="closed", new="open", snapshot=snapshot("open"))
        raise RuntimeError("the caller's work failed")
    assert wait_until(lambda: Alert.objects.filter(condition="circuit_open", status="open").exists(), 5)


def test_a_breaker_forced_open_by_ops_is_only_a_warning() -> None:
    forced = {"state": "open", "reason": "gateway maintenance", "by": "ops", "until": 0}
    alert_from_breaker_transition(old="closed", new="open", snapshot=snapshot("open", forced=forced))
    alert = wait_until(lambda: Alert.objects.filter(condition="circuit_open").first(), 5)
    assert alert.severity == "warning" and "gateway maintenance" in alert.message
    assert not AlertNotification.objects.exists()


def test_runs_write_nothing_for_a_tick_already_run(ticker) -> None:
    now = ticker()
    assert health_check_run(now=now, checks=[failing()]) is not None
    assert health_check_run(now=now + timedelta(seconds=1), checks=[failing()]) is None
    assert HealthCheckRun.objects.count() == 1
    assert Alert.objects.get().occurrences == 1
