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
from health.fleet import process_id
from health.payment_figures import histogram_quantile
from health.services.runs import health_check_run
from payments.figures import figures_reset, latency_buckets, record_payment_outcome, record_refund_outcome
from tests.health.conftest import other_web_doc
from tests.payments.factories import Api, make_client
from tests.support.figures import pay_counted
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def traffic_of(run) -> dict:  # type: ignore[no-untyped-def]
    return run.snapshots.get(component="payments").figures["traffic"]


def test_each_run_counts_what_happened_since_the_last_one(gateway, ticker, staff, client) -> None:
    figures_reset()
    api = Api(make_client()[1])
    health_check_run(now=ticker(), checks=[PaymentsCheck()])  # the baseline
    assert [pay_counted(api)["status"] for _ in range(3)] == ["succeeded"] * 3
    declined = pay_counted(api, payment_method="pm_card_chargeCustomerFail")
    decline = declined["failure_code"]  # the gateway's decline code, e.g. card_declined or generic_decline
    assert declined["status"] == "failed" and decline
    # Outcomes of payments and a refund made elsewhere (a 3-D Secure one, a refund), as services.py reports them.
    record_payment_outcome(status="requires_action")
    record_refund_outcome(status="succeeded")
    first = traffic_of(health_check_run(now=ticker(), checks=[PaymentsCheck()]))

    gateway.fault("rate_limit", count=1, path_prefix="/v1/payment_intents")
    assert pay_counted(api)["attempts"] == 2
    record_payment_outcome(status="shed")  # as services.py reports a payment answered 503 unsent
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
        assert pay_counted(api)["status"] == "succeeded"
    record_payment_outcome(status="unknown")  # as services.py reports a payment whose answer was lost
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


def test_only_codes_declined_in_the_interval_are_among_its_top_decline_codes() -> None:
    from health.payment_figures import fleet_totals, interval_figures

    bounds = list(latency_buckets())

    def doc(at: float, declines: dict[str, int]) -> dict:
        return {"process": "web:1", "at": at, "payments": {"buckets": bounds, "declines": declines,
                                                          "payments": {"failed": sum(declines.values())},
                                                          "refunds": {}, "gateway": {}}}

    first = fleet_totals([doc(100.0, {"expired_card": 4, "generic_decline": 1})], baseline=None)
    second = fleet_totals([doc(130.0, {"expired_card": 4, "generic_decline": 3})], baseline=first)
    reading = interval_figures(totals=second, baseline=first)
    assert (reading["declines"], reading["declined"]) == ({"generic_decline": 2}, 2)


def test_status_metrics_and_emf_agree_with_the_tests_own_tally(gateway, ticker, client, settings) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.logs.test_emf import assert_valid_emf

    settings.HEALTH_STATUS_TOKEN = token = "figures-token-0123456789"
    figures_reset()
    api = Api(make_client()[1])
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    tally: dict[str, int] = {}
    declines: dict[str, int] = {}

    def pay(**body: str) -> None:
        answer = pay_counted(api, **body)
        tally[answer["status"]] = tally.get(answer["status"], 0) + 1
        if answer["status"] == "failed":
            declines[answer["failure_code"]] = declines.get(answer["failure_code"], 0) + 1

    for method in ["pm_card_visa"] * 5 + ["pm_card_chargeCustomerFail"] * 3:
        pay(payment_method=method)
    gateway.fault("latency", delay_ms=1500, count=1, path_prefix="/v1/payment_intents")  # one try times out
    pay()
    gateway.clear()
    gateway.fault("latency", delay_ms=450, count=3, path_prefix="/v1/payment_intents")  # the gateway slows down
    for _ in range(3):
        pay()
    with _metrics_records() as records:
        run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    traffic = traffic_of(run)

    # The run's reading against the tally: 12 payments, 13 tries (one timed out and was retried),
    # four of them at 450 ms or more (three slow answers and the try cut at the read timeout).
    assert traffic["total"] == sum(tally.values()) == 12
    assert traffic["payments"]["succeeded"] == tally["succeeded"] and traffic["payments"]["failed"] == 3
    assert traffic["declines"] == declines
    assert (traffic["gateway"]["attempts"], traffic["gateway"]["timeouts"], traffic["gateway"]["retries"]) == (13, 1, 1)
    bounds = list(latency_buckets())
    slow_from = next(i for i, bound in enumerate(bounds) if bound >= 0.45)
    assert sum(traffic["latency"]["counts"][slow_from:]) == 4
    assert traffic["latency"]["p50_ms"] < 450 <= traffic["latency"]["p95_ms"] <= traffic["latency"]["p99_ms"]

    # /health/status shows that reading as it is.
    status = client.get("/health/status", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert status["components"]["payments"]["figures"]["traffic"] == traffic

    # The EMF record of the run.
    (emf,) = [r for r in records if r.get("component") == "payments" and "Payments" in r]
    assert (emf["Payments"], emf["PaymentsSucceeded"], emf["PaymentsFailed"]) == (12, tally["succeeded"], 3)
    assert (emf["GatewayAttempts"], emf["GatewayTimeouts"], emf["GatewayRetries"]) == (13, 1, 1)
    assert (emf["GatewayLatencyP50"], emf["GatewayLatencyP95"], emf["GatewayLatencyP99"]) == (
        traffic["latency"]["p50_ms"], traffic["latency"]["p95_ms"], traffic["latency"]["p99_ms"])
    # And one per decline code, the code as a dimension.
    by_code = [r for r in records if r.get("component") == "payments" and "PaymentsDeclined" in r]
    assert {r["decline_code"]: r["PaymentsDeclined"] for r in by_code} == traffic["declines"] == declines
    assert_valid_emf(by_code[0])
    assert by_code[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["component", "decline_code"]]

    # /metrics: this process's counters since the reset, the histogram giving the same percentiles.
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("process") == process_id()]
    outcomes = {s.labels["outcome"]: s.value for s in samples if s.name == "payops_payments_total"}
    assert outcomes == {status: float(count) for status, count in tally.items()}
    assert {s.labels["code"]: s.value for s in samples if s.name == "payops_payment_declines_total"} == declines
    created = [s for s in samples if s.labels.get("operation") == "payment_create"]
    assert [s.value for s in created if s.name == "payops_gateway_timeouts_total"] == [1]
    buckets = sorted((float(s.labels["le"]), s.value) for s in created
                     if s.name == "payops_gateway_request_duration_seconds_bucket")
    counts = [int(b - a) for (_, a), (_, b) in zip([(0.0, 0.0)] + buckets[:-1], buckets, strict=False)]
    assert counts == traffic["latency"]["counts"]
    assert round(histogram_quantile(0.95, bounds, counts) * 1000, 1) == traffic["latency"]["p95_ms"]
