"""The fleet's payment figures per health interval: published by every process, merged and
stored by the health run, shown in /health/status."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest
import requests

from health.checks import PaymentsCheck
from health.payment_figures import histogram_quantile
from health.services import health_check_run
from payments.figures import figures_reset, latency_buckets, record_payment_outcome, record_refund_outcome
from tests.health.conftest import other_web_doc
from tests.payments.factories import Api, make_client
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def traffic_of(run) -> dict:  # type: ignore[no-untyped-def]
    return run.snapshots.get(component="payments").figures["traffic"]


def test_each_run_counts_what_happened_since_the_last_one(gateway, ticker, staff, client) -> None:
    figures_reset()
    api = Api(make_client()[1])
    health_check_run(now=ticker(), checks=[PaymentsCheck()])  # the baseline
    assert [api.pay().status_code for _ in range(3)] == [201, 201, 201]
    declined = api.pay(payment_method="pm_card_chargeCustomerFail").json()
    decline = declined["failure_code"]  # the gateway's decline code, e.g. card_declined or generic_decline
    assert declined["status"] == "failed" and decline
    # What services.py reports once a payment's outcome is written.
    for status, code in (("succeeded", ""), ("succeeded", ""), ("succeeded", ""), ("failed", decline),
                         ("requires_action", "")):
        record_payment_outcome(status=status, failure_code=code)
    record_refund_outcome(status="succeeded")
    first = traffic_of(health_check_run(now=ticker(), checks=[PaymentsCheck()]))

    gateway.fault("rate_limit", count=1, path_prefix="/v1/payment_intents")
    assert api.pay().json()["attempts"] == 2
    record_payment_outcome(status="succeeded")
    record_payment_outcome(status="shed")
    second = traffic_of(health_check_run(now=ticker(), checks=[PaymentsCheck()]))

    assert first["payments"] == {"succeeded": 3, "failed": 1, "unknown": 0, "canceled": 0, "shed": 0,
                                 "requires_action": 1}
    assert (first["total"], first["success_rate_pct"], first["declines"]) == (4, 75.0, {decline: 1})
    assert first["refunds"] == {"succeeded": 1}
    assert first["gateway"]["attempts"] == 4 and first["gateway"]["retries"] == 0
    assert first["latency"]["count"] == 4 and first["latency"]["read_timeout_ms"] == 1000
    assert 0 < first["latency"]["p50_ms"] <= first["latency"]["p95_ms"] <= first["latency"]["p99_ms"] <= 1000
    # The second interval holds only what came after the first run.
    assert (second["total"], second["payments"]["shed"], second["success_rate_pct"]) == (2, 1, 50.0)
    assert second["gateway"]["attempts"] == 2 and second["gateway"]["rate_limited"] == 1
    assert second["gateway"]["retries_per_payment"] == 1.0
    assert second["latency"]["count"] == 2
    assert second["interval_s"] is not None and second["per_minute"] is not None

    client.force_login(staff)
    payments = client.get("/health/status").json()["components"]["payments"]
    assert payments["figures"]["traffic"]["total"] == 2
    assert "traffic_totals" not in payments["figures"]  # bookkeeping for the next run stays inside


def test_the_fleet_is_merged_over_processes(gateway, ticker, tmp_path) -> None:
    figures_reset()
    _, key = make_client()
    api = Api(key)
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    with gunicorn(threads=2, log=tmp_path / "web.log", HEALTH_PUBLISH_INTERVAL="1",
                  PAYMENT_GATEWAY_URL=gateway.proxy_url) as base:
        headers = {"Authorization": f"Bearer {key}"}
        for n in range(3):
            answer = requests.post(f"{base}/api/v1/payments", json={"amount": 500, "currency": "usd",
                                                                    "payment_method": "pm_card_visa"},
                                   headers={**headers, "Idempotency-Key": f"fleet-{n}-{ticker.now.timestamp()}"},
                                   timeout=10)
            assert answer.status_code == 201, answer.text
        published = other_web_doc(lambda doc: doc["payments"].get("gateway", {}).get("payment_create", {})
                                  .get("attempts") == 3)
        assert published is not None, (tmp_path / "web.log").read_text()[-2000:]
        assert api.pay().status_code == 201  # and one in this process
        merged = traffic_of(health_check_run(now=ticker(), checks=[PaymentsCheck()]))
    assert merged["latency"]["count"] == 4  # payment creations: three there, one here
    assert merged["processes"] >= 2


def test_quantiles_interpolate_inside_buckets_like_prometheus() -> None:
    bounds = [0.1, 0.2, 0.5, 1.0]
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0, 0]) is None
    assert histogram_quantile(0.5, bounds, [10, 10, 0, 0, 0]) == pytest.approx(0.1)
    assert histogram_quantile(0.75, bounds, [10, 10, 0, 0, 0]) == pytest.approx(0.15)
    assert histogram_quantile(0.95, bounds, [0, 0, 0, 10, 10]) == 1.0  # beyond the last bound: the bound
    assert histogram_quantile(0.5, list(latency_buckets()), [0] * 17 + [4, 0]) <= 1.0


def test_each_run_writes_one_emf_record_with_the_intervals_figures(gateway, ticker) -> None:
    from tests.logs.test_emf import assert_valid_emf

    figures_reset()
    api = Api(make_client()[1])
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    for _ in range(3):
        assert api.pay().json()["status"] == "succeeded"
        record_payment_outcome(status="succeeded")
    record_payment_outcome(status="unknown")
    with _metrics_records() as records:
        run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    traffic = traffic_of(run)
    (event,) = [r for r in records if r.get("component") == "payments" and "Payments" in r]
    assert_valid_emf(event)
    assert (event["Payments"], event["PaymentsSucceeded"], event["PaymentsUnknown"]) == (4, 3, 1)
    assert event["PaymentSuccessRate"] == 75.0
    assert event["GatewayAttempts"] == 3 and event["GatewayTimeouts"] == 0
    assert event["GatewayLatencyP95"] == traffic["latency"]["p95_ms"] > 0
    units = {m["Name"]: m["Unit"] for m in event["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["GatewayLatencyP95"] == "Milliseconds" and units["PaymentSuccessRate"] == "Percent"


@contextlib.contextmanager
def _metrics_records() -> Iterator[list[dict]]:
    """The metrics logger's records during the block, as the service formats them."""
    from config.logs.emf import METRICS_LOGGER
    from config.logs.formatter import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(role="worker"))
    logger = logging.getLogger(METRICS_LOGGER)
    logger.addHandler(handler)
    records: list[dict] = []
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        records.extend(json.loads(line) for line in stream.getvalue().splitlines())


def test_a_process_missing_from_one_view_is_not_counted_twice_when_it_shows_again() -> None:
    from health.payment_figures import fleet_totals, interval_figures

    bounds = list(latency_buckets())

    def doc(process: str, at: float, succeeded: int) -> dict:
        return {"process": process, "at": at, "payments": {"buckets": bounds, "payments": {"succeeded": succeeded},
                                                           "declines": {}, "refunds": {}, "gateway": {}}}

    first = fleet_totals([doc("web-a:1", 100.0, 5), doc("worker:2", 100.0, 1)], baseline=None)
    # Redis away: the run sees only its own process.
    second = fleet_totals([doc("worker:2", 130.0, 2)], baseline=first)
    assert interval_figures(totals=second, baseline=first)["payments"]["succeeded"] == 1
    assert interval_figures(totals=second, baseline=first)["processes"] == 1
    back = fleet_totals([doc("web-a:1", 160.0, 8), doc("worker:2", 160.0, 2)], baseline=second)
    assert interval_figures(totals=back, baseline=second)["payments"]["succeeded"] == 3  # 8 - 5, not 8
    # An hour unseen: gone, and no longer carried.
    later = fleet_totals([doc("worker:2", 160.0 + 3700, 2)], baseline=back)
    assert set(later["processes"]) == {"worker:2"}
