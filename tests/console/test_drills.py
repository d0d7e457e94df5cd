"""Drills run as Celery tasks in a real worker, show their progress, keep their results, are
bounded, and cannot run twice at once."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from health.console import services
from health.console.drills.logs import log_test
from health.models import DrillRun
from tests.logs.conftest import aws_env, cloudwatch, log_group, moto_endpoint  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)
START = "/admin/health/drillrun/add/"


def wait_for(run_id: int, timeout: float = 60.0) -> DrillRun:
    deadline = time.monotonic() + timeout
    while True:
        run = DrillRun.objects.get(pk=run_id)
        if not run.is_active or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


@pytest.fixture
def operator(client, make_user):  # type: ignore[no-untyped-def]
    user = make_user("ops_operator")
    client.force_login(user)
    return user


def start(client, **form) -> DrillRun:  # type: ignore[no-untyped-def]
    response = client.post(START, form)
    assert response.status_code == 302, response.content[:2000]
    run = DrillRun.objects.order_by("-pk").first()
    assert response["Location"] == reverse("admin:health_drillrun_change", args=[run.pk])
    return run


def test_db_pool_stress_queues_the_extra_queries_and_fails_none(client, operator, console_worker) -> None:  # type: ignore[no-untyped-def]
    run = start(client, kind="db_pool", concurrency=25, pool_max=20, hold_ms=600)
    assert LogEntry.objects.filter(object_id=str(run.pk), change_message__contains="concurrency=25").exists()
    seen_progress = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = client.get(reverse("admin:health_drillrun_live", args=[run.pk])).content.decode()
        if "queries finished" in live and 'data-final' not in live:
            seen_progress = True
        if 'data-final="1"' in live:
            break
        time.sleep(0.1)
    run = wait_for(run.pk)
    assert run.status == "succeeded", run.error
    r = run.result
    assert r["pool"] == "this worker's own pool" and r["failed"] == 0
    assert r["queued"] == 5  # 25 queries, 20 connections: five wait for one
    waits = sorted(q["wait_ms"] for q in r["queries"])
    assert waits[-5] >= 400 and waits[-6] < 300  # the five waited about one hold
    assert r["pool_stats"]["requests_errors"] == 0 and r["pool_stats"]["requests_queued"] >= 5
    assert seen_progress
    page = client.get(reverse("admin:health_drillrun_change", args=[run.pk])).content.decode()
    assert "5 queued</strong>" in page and "0 failed</strong>" in page and "<svg" in page


def test_http_pool_reuses_the_payment_sessions_connections(client, operator, console_worker, gateway) -> None:  # type: ignore[no-untyped-def]
    run = wait_for(start(client, kind="http_pool", concurrency=15, rounds=2).pk)
    assert run.status == "succeeded", run.error
    r = run.result
    assert r["failed"] == 0 and r["pool_maxsize"] == 10
    assert r["pool"]["requests"] == 30
    assert r["pool"]["connections_opened"] <= 10  # never more than the pool holds
    assert r["connections_reused"] >= 20
    assert r["pool"]["wait_ms_total"] > 0  # five of each burst waited for a connection
    assert r["proxy_connections_opened"] is not None and r["proxy_connections_opened"] <= 10


def test_payment_timeout_shows_the_retries_the_unknown_outcome_and_its_settlement(client, operator, console_worker,
                                                                                  gateway, settings) -> None:  # type: ignore[no-untyped-def]
    run = wait_for(start(client, kind="payment_timeout", timeouts=3, amount=100).pk, timeout=90)
    assert run.status == "succeeded", run.error
    r = run.result
    assert r["config"]["timeout_s"] == 1.0 and r["config"]["retry_attempts"] == 3  # the suite's settings
    assert r["after_submit"]["status"] == "unknown"
    first_tries = [a for a in r["attempts"] if a["operation"] == "create"][: r["after_submit"]["attempt_count"]]
    assert first_tries and all(a["outcome"] == "timeout" for a in first_tries)
    assert len(first_tries) >= 2  # retried, within the deadline
    assert r["settled"] and r["final_status"] == "succeeded"
    charges = gateway.intents_for("payment_id", r["payment_id"])
    assert len(charges) == 1  # every try carried the same idempotency key
    assert gateway.faults() == []  # the drill leaves no fault behind
    page = client.get(reverse("admin:health_drillrun_change", args=[run.pk])).content.decode()
    assert "recorded <strong>unknown</strong>" in page and "found it <strong>succeeded</strong>" in page


def test_payment_timeout_is_refused_against_a_gateway_that_is_not_the_sandbox(operator, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    settings.PAYMENT_GATEWAY_URL = "http://127.0.0.1:9"  # nothing there: not a sandbox
    run = services.drill_start(kind="payment_timeout", params={"timeouts": 3, "amount": 100}, by=operator)
    assert run.status == "refused" and "refused in production mode" in run.error
    assert DrillRun.objects.filter(kind="payment_timeout", status__in=["queued", "running"]).count() == 0


def test_log_test_reaches_every_handler_through_the_worker(client, operator, console_worker) -> None:  # type: ignore[no-untyped-def]
    run = wait_for(start(client, kind="log_test").pk)
    assert run.status == "succeeded", run.error
    handlers = run.result["handlers"]
    assert handlers and all(h["delivered"] for h in handlers if h["level"] in ("NOTSET", "DEBUG", "INFO", "WARNING"))
    assert run.result["cloudwatch"] == {"enabled": False, "accepted": None,
                                        "detail": "CloudWatch is off (CLOUDWATCH_LOG_GROUP is not set)"}
    assert run.result["category"] == "drill_log_test"


def test_log_test_reports_whether_cloudwatch_accepted_the_record(moto_endpoint, cloudwatch, log_group) -> None:  # type: ignore[no-untyped-def]
    handler = cloudwatch(group=log_group, endpoint=moto_endpoint)
    result = log_test(run_id=7, progress=lambda *a: None)
    assert result["cloudwatch"]["enabled"] and result["cloudwatch"]["accepted"] is True, result["cloudwatch"]
    assert any(h["handler"] == handler.__class__.__name__ and h["delivered"] for h in result["handlers"])


def test_a_drill_cannot_be_started_twice_at_once(client, operator) -> None:  # type: ignore[no-untyped-def]
    # A run in progress (made directly, so no worker can finish it during the test).
    first = DrillRun.objects.create(kind="db_pool", params={"concurrency": 2}, started_by=operator,
                                    status="running", deadline_at=timezone.now() + timedelta(minutes=5))
    with pytest.raises(services.DrillBusy) as busy:
        services.drill_start(kind="db_pool", params={"concurrency": 2}, by=operator)
    assert busy.value.run == first
    response = client.post(START, {"kind": "db_pool", "concurrency": 2, "pool_max": 20, "hold_ms": 100}, follow=True)
    assert b"already running: it cannot be started twice at once" in response.content
    with pytest.raises(IntegrityError), transaction.atomic():  # the database itself refuses a second one
        DrillRun.objects.create(kind="db_pool", status="running", deadline_at=timezone.now())
    other = services.drill_start(kind="log_test", params={}, by=operator)  # another kind may run meanwhile
    assert other.status in ("queued", "running", "succeeded")
    # A run whose worker vanished stops blocking once past its deadline.
    DrillRun.objects.filter(pk=first.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    again = services.drill_start(kind="db_pool", params={"concurrency": 2}, by=operator)
    first.refresh_from_db()
    assert first.status == "failed" and "abandoned" in first.error and again.pk != first.pk
    DrillRun.objects.filter(status="queued").update(status="failed")  # nothing left for a later worker


def test_drill_parameters_are_bounded(client, operator) -> None:  # type: ignore[no-untyped-def]
    response = client.post(START, {"kind": "db_pool", "concurrency": 500, "pool_max": 20, "hold_ms": 60000})
    assert response.status_code == 200
    assert b"Ensure this value is less than or equal to 50" in response.content
    assert b"Ensure this value is less than or equal to 5000" in response.content
    assert not DrillRun.objects.exists()
