from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.redis import get_redis
from health.checks.base import Problem, Reading
from health.models import SEVERITY_RANK, Alert, HealthCheckRun
from health.services.runs import health_check_run
from tests.health.conftest import StubCheck
from tests.support.processes import celery_worker

GROUP_MIGRATION = importlib.import_module("health.migrations.0003_console_groups")
GATEWAY_EVENT_MIGRATION = importlib.import_module("health.migrations.0005_gateway_event_permissions")
AUDIT_MIGRATION = importlib.import_module("health.migrations.0007_audit_trail_permissions")
PASSWORD = "pw-console-1"


@pytest.fixture(scope="package", autouse=True)
def _no_publisher_in_this_process() -> Iterator[None]:
    """The console's requests must not start this process's pool-statistics publisher: its
    live "web" document would stay in the fleet for the rest of the suite, where tests
    count the fleet's processes."""
    from django.core.signals import request_started

    from health.apps import _start_publisher

    disconnected = request_started.disconnect(dispatch_uid="health.fleet.publisher")
    yield
    if disconnected:
        request_started.connect(_start_publisher, dispatch_uid="health.fleet.publisher")


@pytest.fixture(scope="package")
def console_worker(django_db_setup, django_db_blocker, sandbox, tmp_path_factory) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """A real Celery worker for the drills, stopped (and gone from the fleet) when the console's tests end."""
    log = tmp_path_factory.mktemp("console-worker") / "worker.log"
    with celery_worker(log=log, PAYMENT_GATEWAY_URL=sandbox.proxy_url) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _fresh_ticks() -> Iterator[None]:
    redis = get_redis()
    for key in redis.scan_iter("payops:health:tick:*"):
        redis.delete(key)
    yield


def ensure_groups() -> None:
    """The groups as the data migrations make them (a transactional test's flush removes them)."""
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if Group.objects.filter(name__in=list(GROUP_MIGRATION.GROUPS)).count() == len(GROUP_MIGRATION.GROUPS):
        return
    loader = MigrationExecutor(connection).loader
    state = loader.project_state(("health", "0005_gateway_event_permissions"))
    GROUP_MIGRATION.create_groups(state.apps, None)
    GATEWAY_EVENT_MIGRATION.add_permissions(state.apps, None)
    AUDIT_MIGRATION.grant(loader.project_state(("health", "0007_audit_trail_permissions")).apps, None)


@pytest.fixture
def make_user(db, django_user_model) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    def make(group: str | None, *, username: str | None = None, staff: bool = True) -> Any:
        ensure_groups()
        user = django_user_model.objects.create_user(username=username or f"u-{group or 'none'}",
                                                     password=PASSWORD, is_staff=staff)
        if group:
            from django.contrib.auth.models import Group

            user.groups.add(Group.objects.get(name=group))
        return user

    return make


def make_alert(*, severity: str = "warning", component: str = "database", condition: str = "pool_utilisation",
               status: str = "open", age: timedelta = timedelta(minutes=10), last: timedelta = timedelta(0),
               message: str = "", occurrences: int = 3) -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        component=component, condition=condition, severity=severity, severity_rank=SEVERITY_RANK[severity],
        status=status, message=message or f"{component} {condition} ({severity})", first_seen=now - age,
        last_seen=now - last, occurrences=occurrences, resolved_at=now if status == "resolved" else None,
    )


def stub_checks(*, db_pct: float = 45.0, http_pct: float = 30.0, latency_ms: float = 12.0,
                db_error: bool = False, web_pct: float = 50.0, payment_ms: float | None = None) -> list[StubCheck]:
    """Readings shaped like the real checks' figures, for runs made by hand; with `payment_ms`,
    30 s of payments whose gateway calls took about that long."""
    db_in_use = round(db_pct / 100 * 20)
    database = Reading(
        message=f"{db_in_use} of 20 pooled connections in use",
        figures={"in_use": db_in_use, "idle": 20 - db_in_use, "max": 20, "waiting": 2 if db_pct > 80 else 0,
                 "wait_ms": 340.0, "queued": 3, "acquire_errors": 1 if db_error else 0, "exhausted_503": 0,
                 "errors": 1 if db_error else 0, "utilisation_pct": db_pct, "fullest": "web-1:101", "processes": 2,
                 "server": {"total": 31, "max_connections": 100}},
        utilisation={"pool_utilisation": db_pct},
        problems=[Problem("pool_exhausted", "error", "1 database connection request timed out")] if db_error else [],
    )
    http_in_use = round(http_pct / 100 * 10)
    payment_http = Reading(
        message=f"{http_in_use} of 10 connections in use",
        figures={"in_use": http_in_use, "idle": 10 - http_in_use, "max": 10, "waiting": 0, "requests": 40,
                 "pool_full": 0, "errors": 0, "utilisation_pct": http_pct, "fullest": "web-1:101",
                 "pools": [{"wait_ms": 12.5, "max_wait_ms": 4.0}],
                 "limit": 12, "limit_max": 20, "in_flight": 9, "shed": 5, "slow_calls": 30},
        utilisation={"pool_utilisation": http_pct},
    )
    web_busy = round(web_pct / 100 * 8)
    web = Reading(
        message=f"{web_busy * 2} of 16 threads busy in 2 workers",
        figures={"processes": 2, "in_use": web_busy * 2, "max": 16, "waiting": 0, "utilisation_pct": web_pct,
                 "fullest": "web-1:101", "requests": 1200, "queued": 0, "wait_ms": 35.0, "max_wait_ms": 0.0},
        utilisation={"thread_utilisation": web_pct},
    )
    gateway = Reading(message="probe answered", figures={"latency_ms": latency_ms})
    redis = Reading(message="ping 0.3 ms", figures={"latency_ms": 0.3, "in_use": 7, "used_memory": 2 << 20})
    checks = [StubCheck("database", database), StubCheck("web", web), StubCheck("payment_http", payment_http),
              StubCheck("gateway", gateway), StubCheck("redis", redis)]
    if payment_ms is not None:
        checks.append(StubCheck("payments", Reading(figures={"traffic": payment_traffic(payment_ms)})))
    return checks


def payment_traffic(typical_ms: float, *, payments: int = 40) -> dict[str, Any]:
    """One interval's merged payment figures, built by the health run's own merge from totals:
    most calls near `typical_ms`, a tenth three times slower, one card declined in ten."""
    from health.payment_figures import interval_figures
    from payments.figures import latency_buckets

    bounds = latency_buckets()
    counts = [0] * (len(bounds) + 1)
    for ms, n in ((typical_ms, payments - payments // 10), (typical_ms * 3, payments // 10)):
        counts[next((i for i, b in enumerate(bounds) if ms / 1000 <= b), len(bounds))] += n
    totals = {"buckets": list(bounds), "payments": {"succeeded": payments - payments // 10,
                                                    "failed": payments // 10},
              "declines": {"card_declined": payments // 10}, "refunds": {},
              "gateway": {"payment_create": {"calls": payments, "attempts": payments, "retries": 0, "timeouts": 0,
                                             "connect_errors": 0, "answers": {"200": payments},
                                             "latency": {"counts": counts, "sum": payments * typical_ms / 1000,
                                                         "count": payments}}}}
    traffic = interval_figures(totals={"at": 1030.0, "processes": {"web-1:101": totals},
                                       "seen": {"web-1:101": 1030.0}},
                               baseline={"at": 1000.0, "processes": {}})
    return traffic


def make_run(*, at: datetime | None = None, **readings: Any) -> HealthCheckRun:
    run = health_check_run(now=at or timezone.now(), checks=stub_checks(**readings))
    assert run is not None
    return run


def make_history(*, minutes: int = 20, interval: int = 30) -> list[HealthCheckRun]:
    """Runs every `interval` s over the last `minutes`, utilisation rising towards now."""
    now = timezone.now()
    steps = minutes * 60 // interval
    return [make_run(at=now - timedelta(seconds=interval * (steps - i)),
                     db_pct=30 + 55 * i / steps, http_pct=20 + 30 * (i % 5) / 4, latency_ms=10 + (i % 7) * 6,
                     web_pct=25 + 40 * i / steps, payment_ms=80 + 120 * i / steps)
            for i in range(steps)]
