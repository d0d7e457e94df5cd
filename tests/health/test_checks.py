"""Each component check against the real dependency: Redis, Celery, logging, payments, HTTP
pools and the gateway (the sandbox's localstripe behind its fault proxy)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from config.http.outbound import get_outbound
from health.checks import (
    CeleryCheck,
    GatewayCheck,
    LoggingCheck,
    OutboundHttpCheck,
    PaymentHttpCheck,
    PaymentsCheck,
    RedisCheck,
)
from health.fleet import process_id
from health.models import Alert
from health.selectors import fleet_pool_stats
from health.services.runs import health_check_run
from payments.gateway import get_gateway
from payments.models import Payment
from tests.payments.factories import make_client
from tests.support.processes import gunicorn, wait_until
from tests.support.tcpproxy import _free_port

pytestmark = pytest.mark.django_db(transaction=True)


def reading_of(run, component: str):  # type: ignore[no-untyped-def]
    return run.snapshots.get(component=component)


def test_redis_reports_latency_and_memory(ticker) -> None:
    snapshot = reading_of(health_check_run(now=ticker(), checks=[RedisCheck()]), "redis")
    assert snapshot.status == "ok"
    assert 0 < snapshot.latency_ms < 100
    assert snapshot.figures["used_memory"] > 0


def test_redis_unreachable_is_down_with_an_error_alert_and_the_service_degraded(settings, ticker,
                                                                                client) -> None:
    from config.redis import get_redis

    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        run = health_check_run(now=ticker(), checks=[RedisCheck()])
        ready = client.get("/health/ready")
    finally:
        get_redis.cache_clear()
    assert reading_of(run, "redis").status == "down"
    # Payments go on without Redis: degraded, and the balancer keeps every web process.
    assert run.status == "degraded"
    assert client.get("/health/status").json()["status"] == "degraded"
    assert ready.status_code == 200
    alert = Alert.objects.get(component="redis")
    assert (alert.condition, alert.severity) == ("unreachable", "error")


def test_celery_workers_answer_and_the_queue_is_measured(worker, ticker) -> None:
    # The worker publishes its pools as soon as it is ready: it is expected to answer.
    assert wait_until(lambda: any(d["role"] == "worker" for d in fleet_pool_stats()), timeout=30)
    snapshot = reading_of(health_check_run(now=ticker(), checks=[CeleryCheck()]), "celery")
    assert snapshot.status == "ok", snapshot.message
    assert snapshot.figures["workers"] >= 1
    assert snapshot.figures["workers"] == snapshot.figures["expected"]
    assert snapshot.figures["check_ms"] < 900  # answered as soon as every expected worker did
    assert snapshot.waiting is not None


def test_logging_without_cloudwatch_is_ok_and_says_so(ticker) -> None:
    snapshot = reading_of(health_check_run(now=ticker(), checks=[LoggingCheck()]), "logging")
    assert (snapshot.status, snapshot.message) == ("ok", "cloudwatch off")


@pytest.mark.slow
def test_logs_dropped_by_a_process_whose_cloudwatch_is_away_raise_an_error(tmp_path, ticker) -> None:
    # CloudWatch on, pointed at a port nobody listens on: the handler's small queue overflows.
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "CLOUDWATCH_LOG_GROUP": "/payops/health-test", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
           "CLOUDWATCH_QUEUE_SIZE": "5", "CLOUDWATCH_SEND_INTERVAL": "200", "CLOUDWATCH_TIMEOUT": "500",
           "HEALTH_PUBLISH_INTERVAL": "1", "HEALTH_CHECK_INTERVAL": "2"}
    with gunicorn(threads=2, log=tmp_path / "web.log", **env) as base:
        for _ in range(20):
            requests.get(f"{base}/nope", timeout=5)  # each 404 is a log record
        published = wait_until(
            lambda: [d for d in fleet_pool_stats()
                     if d["pid"] != os.getpid() and (d.get("logging") or {}).get("recent", {}).get("dropped")],
            timeout=10)
        assert published, (tmp_path / "web.log").read_text()[-2000:]
        run = health_check_run(now=ticker(), checks=[LoggingCheck()])
    snapshot = reading_of(run, "logging")
    assert snapshot.status == "degraded"
    assert snapshot.figures["dropped"] >= 10 and snapshot.maximum >= 5
    assert Alert.objects.get(component="logging", condition="logs_dropped").severity == "error"


def test_payments_unsettled_past_their_age_raise_an_error_with_the_amounts(settings, ticker) -> None:
    settings.PAYMENT_UNKNOWN_MAX_AGE = 60
    client, _ = make_client()

    def payment(status: str, amount: int, age: timedelta) -> None:
        p = Payment.objects.create(client=client, idempotency_key=uuid.uuid4().hex, request_hash="x" * 64,
                                   amount=amount, currency="usd", payment_method="pm_card_visa", status=status)
        Payment.objects.filter(pk=p.pk).update(created=timezone.now() - age)

    payment("unknown", 1500, timedelta(minutes=5))
    payment("processing", 2500, timedelta(minutes=10))
    payment("processing", 999, timedelta(seconds=5))  # still young
    payment("succeeded", 7000, timedelta(hours=1))
    run = health_check_run(now=ticker(), checks=[PaymentsCheck()])
    snapshot = reading_of(run, "payments")
    assert snapshot.errors == 2 and snapshot.in_use == 3
    alert = Alert.objects.get(component="payments", condition="unknown_overdue")
    assert alert.severity == "error"
    assert "2 payments" in alert.message and "40.00 USD" in alert.message
    assert alert.payments_in_flight == 3 and alert.amount_affected == {"usd": 4999}


def test_http_pools_show_the_general_clients_connections(webhook, ticker) -> None:
    for _ in range(3):
        assert get_outbound().post(webhook.url, json={"ping": 1}).status_code == 200
    snapshot = reading_of(health_check_run(now=ticker(), checks=[OutboundHttpCheck()]), "http")
    pools = [p for p in snapshot.figures["pools"] if p["host"].endswith(webhook.url.split("/")[2])]
    assert pools and pools[0]["client"] == "outbound"
    assert pools[0]["requests"] >= 3 and pools[0]["max"] >= 1
    assert snapshot.status == "ok"


def test_gateway_answers_the_probe_and_reports_its_breaker(gateway, ticker) -> None:
    get_gateway().probe()  # the payment pool exists once the gateway was called (checks run concurrently)
    run = health_check_run(now=ticker(), checks=[GatewayCheck(), PaymentHttpCheck()])
    snapshot = reading_of(run, "gateway")
    assert snapshot.status == "ok", snapshot.message
    assert snapshot.latency_ms > 0
    assert snapshot.figures["breaker"]["state"] == "closed"
    payment_pool = reading_of(run, "payment_http")
    host = gateway.proxy_url.rstrip("/").split("//")[1]
    # This process's pool: a Celery worker that earlier tests left running has its own.
    pools = [p for p in payment_pool.figures["pools"] if p["host"].endswith(host) and p["process"] == process_id()]
    assert len(pools) == 1 and pools[0]["client"] == "payment"
    assert pools[0]["max"] == 10 and pools[0]["requests"] >= 1


@pytest.mark.parametrize(("elsewhere", "severity"), [(True, "critical"), (False, "error")],
                         ids=["another-gateway", "same-gateway-another-key"])
def test_a_process_paying_through_another_gateway_or_key_raises_an_alert_until_it_leaves(
        gateway, ticker, elsewhere, severity) -> None:
    import json

    from health import fleet
    from health.services.publishing import pool_stats_collect

    own = pool_stats_collect()
    key = get_gateway().config.api_key
    assert len(own["gateway"]["fingerprint"]) == 16 and key not in json.dumps(own)  # published, never the key
    # A worker of an old release publishing beside the fleet: on another gateway, or on ours
    # with another key (another account's, or the old one of a rotation).
    address = "https://api.stripe.com" if elsewhere else own["gateway"]["address"]
    stray = {**own, "process": "stray-worker", "role": "worker", "host": "old-release", "pid": 4242,
             "gateway": {"address": address, "fingerprint": "0123456789abcdef"}}
    fleet.write(stray)
    try:
        run = health_check_run(now=ticker(), checks=[GatewayCheck()])
    finally:
        fleet.forget("stray-worker")
    alert = Alert.objects.get(component="gateway", condition="config_drift")
    assert (alert.severity, alert.status) == (severity, "open")
    assert "worker old-release:4242" in alert.message and f"{address} key 01234567" in alert.message
    assert gateway.proxy_url.rstrip("/") in alert.message and key not in alert.message
    assert len(reading_of(run, "gateway").figures["gateways"]) == 2
    for _ in range(2):  # resolved after its consecutive clean runs, like every alert
        health_check_run(now=ticker(), checks=[GatewayCheck()])
    alert.refresh_from_db()
    assert alert.status == "resolved"


@pytest.mark.slow
def test_a_gateway_outage_marks_it_down_and_alerts_but_ready_stays_200(gateway, client, ticker) -> None:
    gateway.fault("refuse", duration_ms=3000)
    run = health_check_run(now=ticker(), checks=[GatewayCheck(), RedisCheck()])
    snapshot = reading_of(run, "gateway")
    assert snapshot.status == "down"
    assert "refused" in snapshot.message
    alert = Alert.objects.get(component="gateway", condition="unreachable")
    assert (alert.severity, alert.status) == ("error", "open")
    assert run.status == "down" and reading_of(run, "redis").status == "ok"
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert "gateway" not in ready.json()["checks"]
    gateway.clear()
    get_gateway().breaker.reset()


def test_a_slow_gateway_and_refused_calls_show_with_the_payment_pool_and_warn(gateway, settings, ticker,
                                                                              monkeypatch) -> None:
    from health import fleet
    from payments.gateway import reset_gateway
    from tests.payments.test_saturation import _pay_at_once

    settings.PAYMENT_CONCURRENCY_MAX, settings.PAYMENT_CONCURRENCY_MIN, settings.PAYMENT_SLOW_CALL = 2, 1, 0.3
    reset_gateway()
    monkeypatch.setattr(fleet, "history", fleet.CounterHistory())  # earlier tests' clients counted too
    try:
        _, key = make_client()
        gateway.fault("latency_before", delay_ms=600, method="POST", path_prefix="/v1/payment_intents")
        codes = sorted(r.status_code for r, _ in _pay_at_once(key, 4))
        assert codes == [201, 201, 503, 503]
        run = health_check_run(now=ticker(), checks=[PaymentHttpCheck()])
        snapshot = reading_of(run, "payment_http")
        figures = snapshot.figures
        # This process's limit (a worker left by earlier tests publishes its own).
        assert figures["shed"] >= 2 and figures["slow_calls"] >= 2 and figures["in_flight"] == 0
        assert figures["limit"] < figures["limit_max"]
        slow = Alert.objects.get(component="payment_http", condition="slow_calls")
        saturated = Alert.objects.get(component="payment_http", condition="gateway_saturated")
        assert slow.severity == saturated.severity == "warning"
        assert "300 ms" in slow.message and "gateway_saturated" in saturated.message
    finally:
        gateway.clear()
        get_gateway().breaker.reset()
        reset_gateway()
