"""GET /metrics: the fleet's pools and payments in Prometheus' text format, checked by the
official client's parser and by `promtool check metrics` (scripts/promtool.sh installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from health.checks import GatewayCheck, PaymentsCheck
from health.fleet import process_id
from health.services.alerts import alert_raise
from health.services.runs import health_check_run
from payments.figures import figures_reset, record_payment_outcome
from tests.payments.factories import Api, make_client
from tests.support.figures import pay_counted

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-0123456789"


def scrape(client) -> str:  # type: ignore[no-untyped-def]
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.content.decode()


def samples(text: str) -> dict[str, list]:
    """Samples by sample name (counters keep their _total, histograms their _bucket...)."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list], name: str, **labels: str) -> float:
    matching = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


def test_metrics_need_staff_or_the_token(client, settings, staff, django_user_model) -> None:
    settings.HEALTH_STATUS_TOKEN = TOKEN
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert anonymous["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_token")
    customer = django_user_model.objects.create_user(username="not-staff", password="pw-x-123456")
    client.force_login(customer)
    assert client.get("/metrics").status_code == 403
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200
    client.logout()
    assert "payops_pool_in_use" in scrape(client)


def test_payments_pools_and_health_agree_with_the_tally(client, settings, gateway, ticker) -> None:
    settings.HEALTH_STATUS_TOKEN = TOKEN
    figures_reset()
    health_check_run(now=ticker(), checks=[PaymentsCheck()])
    api = Api(make_client()[1])
    tally = {"succeeded": 0, "failed": 0}
    codes: dict[str, int] = {}
    for method in ["pm_card_visa"] * 4 + ["pm_card_chargeCustomerFail"] * 2:
        body = pay_counted(api, payment_method=method)
        tally[body["status"]] += 1
        if body["failure_code"]:
            codes[body["failure_code"]] = codes.get(body["failure_code"], 0) + 1
    gateway.fault("latency", delay_ms=300, count=2, path_prefix="/v1/payment_intents")
    for _ in range(2):
        assert pay_counted(api)["status"] == "succeeded"
        tally["succeeded"] += 1
    alert_raise(component="redis", condition="memory", severity="warning", message="memory 85%")
    run = health_check_run(now=ticker(), checks=[PaymentsCheck(), GatewayCheck()])
    traffic = run.snapshots.get(component="payments").figures["traffic"]

    text = scrape(client)
    found = samples(text)
    me = process_id()
    assert value(found, "payops_payments_total", process=me, outcome="succeeded") == tally["succeeded"] == 6
    assert value(found, "payops_payments_total", process=me, outcome="failed") == tally["failed"] == 2
    ((code, declined),) = codes.items()  # the gateway's decline code, whichever it names
    assert value(found, "payops_payment_declines_total", process=me, code=code) == declined == 2
    op = {"process": me, "operation": "payment_create"}
    assert value(found, "payops_gateway_calls_total", **op) == 8
    assert value(found, "payops_gateway_responses_total", code="402", **op) == 2
    # The histogram: cumulative buckets ending in +Inf at the count; the two slowed calls
    # above 0.3 s of the suite's 1 s read timeout.
    buckets = sorted((float(s.labels["le"]), s.value) for s in found["payops_gateway_request_duration_seconds_bucket"]
                     if s.labels["process"] == me and s.labels["operation"] == "payment_create")
    assert buckets[-1] == (float("inf"), 8) and [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert 8 - dict(buckets)[0.3] == 2
    assert value(found, "payops_gateway_request_duration_seconds_count", **op) == 8
    assert value(found, "payops_gateway_request_duration_seconds_sum", **op) >= 0.6
    # The same interval as the health run stored (and /health/status shows).
    assert traffic["total"] == 8 and traffic["latency"]["count"] == 8
    assert value(found, "payops_payment_success_ratio") == pytest.approx(6 / 8)
    assert value(found, "payops_payment_latency_seconds", percentile="p95") == pytest.approx(
        traffic["latency"]["p95_ms"] / 1000)
    # Pools, components, breaker and alerts.
    assert value(found, "payops_pool_max", process=me, pool="database") == 20
    assert value(found, "payops_pool_max", process=me, pool="http", client="payment") == 10
    assert value(found, "payops_health_component_status", component="payments") == 0
    assert value(found, "payops_gateway_breaker_state", state="closed") == 1
    assert value(found, "payops_gateway_breaker_state", state="open") == 0
    assert value(found, "payops_alerts_open", severity="warning") == 1
    assert value(found, "payops_alerts_open", severity="critical") == 0
    assert value(found, "payops_fleet_shared") == 1
    assert value(found, "payops_gateway_accounts") == 1  # the session's processes all pay through one
    _promtool_accepts(text)


def test_with_redis_away_this_process_is_still_exposed(client, settings) -> None:
    from config.redis import get_redis

    settings.HEALTH_STATUS_TOKEN = TOKEN
    figures_reset()
    record_payment_outcome(status="unknown")
    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        text = scrape(client)
    finally:
        get_redis.cache_clear()
    found = samples(text)
    assert value(found, "payops_fleet_shared") == 0
    assert value(found, "payops_payments_total", process=process_id(), outcome="unknown") == 1
    _promtool_accepts(text)


def _promtool_accepts(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/promtool.sh, run by make prepare, installs it)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=20)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr
