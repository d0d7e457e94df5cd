"""This process's payment figures, counted where a request leaves for the gateway."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from payments import figures
from payments.figures import figures_reset, figures_snapshot, latency_buckets, record_payment_outcome
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(gateway) -> Api:
    figures_reset()
    _, key = make_client()
    return Api(key)


def test_buckets_are_fractions_of_the_read_timeout_with_the_alert_bounds(settings) -> None:
    settings.PAYMENT_TIMEOUT = 10.0
    bounds = latency_buckets()
    assert bounds[-1] == 10.0 and 5.0 in bounds and 8.0 in bounds
    assert list(bounds) == sorted(set(bounds))


def test_real_payments_count_their_gateway_calls_answers_and_latency(api: Api, gateway) -> None:
    assert [api.pay().status_code for _ in range(3)] == [201, 201, 201]
    declined = api.pay(payment_method="pm_card_chargeCustomerFail")
    assert declined.json()["status"] == "failed" and declined.json()["failure_code"]  # a card error
    gateway.fault("latency", delay_ms=400, count=1, path_prefix="/v1/payment_intents")
    slow = api.pay()
    assert slow.json()["status"] == "succeeded"
    gateway.fault("http_503", count=1, path_prefix="/v1/payment_intents")
    retried = api.pay()
    assert retried.json()["attempts"] == 2, retried.content

    calls = figures_snapshot()["gateway"]["payment_create"]
    assert calls["calls"] == 6 and calls["attempts"] == 7 and calls["retries"] == 1
    assert calls["answers"] == {"200": 5, "402": 1, "503": 1}
    assert calls["timeouts"] == 0
    latency = calls["latency"]
    assert latency["count"] == 7 and sum(latency["counts"]) == 7
    # The delayed call sits at or above 0.4 s of a 1 s read timeout; the others well below.
    bounds = latency_buckets()
    slow_index = next(i for i, bound in enumerate(bounds) if bound >= 0.4)
    assert sum(latency["counts"][slow_index:]) == 1
    assert 0.4 <= latency["sum"] < 0.4 + 6 * 0.3


def test_a_timed_out_try_counts_as_a_timeout_in_the_last_buckets(api: Api, gateway) -> None:
    # Longer than the suite's 1 s read timeout once; the retry answers.
    gateway.fault("latency", delay_ms=1500, count=1, path_prefix="/v1/payment_intents")
    response = api.pay()
    assert response.status_code in (201, 202), response.content
    calls = figures_snapshot()["gateway"]["payment_create"]
    assert calls["timeouts"] == 1 and calls["attempts"] == 2
    # A try cut at the read timeout lands in the top bucket or just past it (+Inf).
    assert sum(calls["latency"]["counts"][-2:]) == 1


def test_outcomes_and_decline_codes_are_counted_from_many_threads() -> None:
    figures_reset()

    def pay(n: int) -> None:
        record_payment_outcome(status="succeeded")
        record_payment_outcome(status="failed", failure_code="card_declined" if n % 2 else "insufficient_funds")

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(pay, range(400)))
    record_payment_outcome(status="shed")
    record_payment_outcome(status="weird")
    snapshot = figures_snapshot()
    assert snapshot["payments"] == {"succeeded": 400, "failed": 400, "shed": 1, "other": 1}
    assert snapshot["declines"] == {"card_declined": 200, "insufficient_funds": 200}


def test_decline_codes_are_bounded(monkeypatch) -> None:
    figures_reset()
    monkeypatch.setattr(figures, "MAX_CODES", 3)
    for code in ("a", "b", "c", "d", "e", "a"):
        record_payment_outcome(status="failed", failure_code=code)
    assert figures_snapshot()["declines"] == {"a": 2, "b": 1, "c": 1, "other": 2}


def test_each_payment_is_counted_once_by_the_answer_its_client_got(api: Api, gateway) -> None:
    """Outcomes come from the payment services, once per answer: a retry after a 503 is a new
    answer, a payment settled later was counted as unknown, a 3-D Secure payment counts again
    when its customer is done."""
    from django.conf import settings

    from payments.services.settlement import payment_settle
    from tests.payments.test_customer_action import authenticate, tokenize

    api.pay()
    api.pay(payment_method="pm_card_chargeCustomerFail")
    gateway.fault("unauthorized", count=1, method="POST", path_prefix="/v1/payment_intents")
    assert api.pay(idempotency_key="retry-me").status_code == 503
    assert api.pay(idempotency_key="retry-me").status_code == 201
    gateway.fault("lose_answer", count=settings.PAYMENT_RETRY_ATTEMPTS, method="POST",
                  path_prefix="/v1/payment_intents")
    lost = api.pay().json()
    assert payment_settle(payment_id=lost["id"]).status == "succeeded"
    waiting = api.pay(payment_method=tokenize(gateway)).json()
    authenticate(gateway, waiting, success=True)
    assert payment_settle(payment_id=waiting["id"]).status == "succeeded"
    snapshot = figures_snapshot()
    assert snapshot["payments"] == {"succeeded": 3, "failed": 1, "shed": 1, "unknown": 1, "requires_action": 1}
    assert snapshot["declines"] == {"generic_decline": 1}
    gateway.fault("http_400", count=1, method="POST", path_prefix="/v1/refunds")
    api.refund(lost["id"], amount=100)
    api.refund(lost["id"], amount=100)
    assert figures_snapshot()["refunds"] == {"failed": 1, "succeeded": 1}
