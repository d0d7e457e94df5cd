"""Payment alerts before failure: the p95 of payment creations over a health interval against
the read timeout (the suite's is 1 s: a warning above half of it, an error above 80 %), the
timeout rate, a success rate below the previous hour's, a decline code spiking."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from health.checks import PaymentsCheck
from health.checks.base import Level, Reading
from health.models import Alert
from health.services.runs import health_check_run
from payments.figures import figures_reset, record_payment_outcome
from tests.health.conftest import StubCheck
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


def pay_concurrently(key: str, count: int) -> list[str]:
    # Each thread its own client, as separate customers would be.
    with ThreadPoolExecutor(count) as executor:
        return list(executor.map(lambda _: Api(key).pay().json()["status"], range(count)))


def latency_alert() -> Alert | None:
    return Alert.objects.filter(component="payments", condition="gateway_latency").first()


def test_slow_gateway_warns_before_timeouts_errors_past_80_percent_and_resolves(gateway, ticker) -> None:
    figures_reset()
    _, key = make_client()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert pay_concurrently(key, 5) == ["succeeded"] * 5  # an ordinary gateway
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert latency_alert() is None

    gateway.fault("latency", delay_ms=600, path_prefix="/v1/payment_intents")
    assert pay_concurrently(key, 5) == ["succeeded"] * 5
    run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    warned = latency_alert()
    traffic = run.snapshots.get(component="payments").figures["traffic"]
    assert traffic["gateway"]["timeouts"] == 0  # seen while every call still succeeds
    assert (warned.severity, warned.status) == ("warning", "open")
    assert "of the 1000 ms read timeout" in warned.message

    gateway.clear()
    gateway.fault("latency", delay_ms=850, path_prefix="/v1/payment_intents")
    assert pay_concurrently(key, 5) == ["succeeded"] * 5
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert latency_alert().severity == "error"

    gateway.clear()
    for _ in range(2):  # two checks without the condition
        assert pay_concurrently(key, 5) == ["succeeded"] * 5
        health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert latency_alert().status == "resolved"


def test_a_quiet_interval_is_not_judged(gateway, ticker, settings) -> None:
    settings.ALERT_GATEWAY_MIN_CALLS = 5
    figures_reset()
    _, key = make_client()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    gateway.fault("latency", delay_ms=700, path_prefix="/v1/payment_intents")
    assert pay_concurrently(key, 2) == ["succeeded"] * 2
    run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert run.snapshots.get(component="payments").figures["traffic"]["latency"]["p95_ms"] > 600
    assert latency_alert() is None


def latency_at(share: float) -> StubCheck:
    return StubCheck("payments", Reading(levels={"gateway_latency": Level(
        value=share, warning=50, error=80, message=f"gateway p95 latency at {share}% of the read timeout")}))


def test_latency_hovering_at_a_threshold_changes_the_alert_at_most_twice(ticker, caplog) -> None:
    # Ten minutes of 30 s checks with the p95 wandering around half the read timeout.
    hovering = [48, 51, 49, 52, 47, 51, 50.5, 48, 53, 49, 51, 47.5, 52, 49, 51, 48, 50.2, 49, 52, 48]
    with caplog.at_level(logging.INFO, logger="health.services"):
        for share in hovering:
            health_check_run(now=ticker(), checks=[latency_at(share)])
    changes = [r for r in caplog.records
               if getattr(r, "category", "") in ("alert_raised", "alert_severity_changed", "alert_resolved")]
    assert 1 <= len(changes) <= 2, [r.getMessage() for r in changes]
    assert latency_alert().severity == "warning"


def test_an_error_clears_to_a_warning_only_below_its_margin(ticker) -> None:
    # The fourth sighting in a row of an error is critical: ALERT_ESCALATE_AFTER (3) as for any error.
    for share, expected in ((85, "error"), (77, "error"), (74, "warning"), (90, "critical")):
        health_check_run(now=ticker(), checks=[latency_at(share)])
        assert latency_alert().severity == expected, share


def test_timeouts_among_the_tries_raise_an_error_naming_the_rate(gateway, ticker) -> None:
    figures_reset()
    _, key = make_client()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    # Two first tries wait past the read timeout; their retries answer.
    gateway.fault("latency", delay_ms=1500, count=2, path_prefix="/v1/payment_intents")
    assert set(pay_concurrently(key, 5)) <= {"succeeded", "unknown", "processing"}
    run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    gateway_figures = run.snapshots.get(component="payments").figures["traffic"]["gateway"]
    assert gateway_figures["timeouts"] == 2 and gateway_figures["attempts"] >= 7
    alert = Alert.objects.get(component="payments", condition="gateway_timeouts")
    assert alert.severity == "error" and "2 of " in alert.message and "timed out" in alert.message


def outcomes(succeeded: int, declined: dict[str, int] | None = None) -> None:
    """What services.py reports as payments reach their outcomes."""
    for _ in range(succeeded):
        record_payment_outcome(status="succeeded")
    for code, count in (declined or {}).items():
        for _ in range(count):
            record_payment_outcome(status="failed", failure_code=code)


def test_a_burst_of_one_decline_code_raises_one_warning_naming_it(ticker) -> None:
    figures_reset()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    for _ in range(3):  # an ordinary hour: a decline now and then
        outcomes(30, {"insufficient_funds": 1})
        health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert not Alert.objects.filter(component="payments").exists()

    outcomes(20, {"card_declined": 12, "insufficient_funds": 1})
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    spike = Alert.objects.get(component="payments", condition="decline_spike")
    assert spike.severity == "warning" and "card_declined 12 of 33" in spike.message
    assert "insufficient_funds" not in spike.message  # at its usual share
    drop = Alert.objects.get(component="payments", condition="success_rate_drop")
    assert drop.severity == "warning" and "60.6% of 33 payments succeeded" in drop.message


def test_a_quiet_night_never_pages(ticker) -> None:
    figures_reset()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    outcomes(30, {})
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    outcomes(2, {"card_declined": 3})  # most of five payments declined, but five is not a trend
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    assert not Alert.objects.filter(component="payments").exists()
