"""Every migration runs backwards: each of our apps is migrated to zero and back up on a database
that holds data, as a rollback of a deploy would (docs/runbook.md, "Roll back a deploy"). The
apps and their migrations are read from the code, so new migrations are covered as they land."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.apps import apps

from tests.support.databases import scratch_database
from tests.support.processes import ROOT, service_env

pytestmark = pytest.mark.slow

# Rows in every table a release could touch, made through the models so any field added later
# gets its default.
SEED = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from payments.models import IdempotencyRecord, Payment, PaymentAttempt, Refund
from payments.services.api_keys import api_key_create
from health.models import Alert, AlertNotification, BreakerOverride, ComponentSnapshot, DrillRun, HealthCheckRun, Silence
now = timezone.now()
user = get_user_model().objects.create_user("rollback-ops", password="x", is_staff=True)
client, _ = api_key_create(name="rollback-shop")
for i in range(3):
    p = Payment.objects.create(client=client, idempotency_key=f"k{i}", request_hash="h", amount=100 + i, currency="usd",
                               payment_method="pm_card_visa", status="succeeded", reference=f"order-{i}")
    PaymentAttempt.objects.create(payment=p, number=1, operation="create", started_at=now, duration_ms=12,
                                  outcome="succeeded", http_status=200)
    IdempotencyRecord.objects.create(client=client, key=f"k{i}", endpoint="payments.create", request_hash="h",
                                     resource_id=p.id, response_status=201, response_body={"id": p.id})
Refund.objects.create(payment=p, client=client, idempotency_key="r1", request_hash="h", amount=50, status="succeeded")
run = HealthCheckRun.objects.create(tick=now, started_at=now, finished_at=now, duration_ms=5, status="ok", ran_on="x")
ComponentSnapshot.objects.create(run=run, checked_at=now, component="database", status="ok", message="", figures={})
alert = Alert.objects.create(component="redis", condition=f"down-{user.pk}", severity="error", severity_rank=30, message="m",
                             first_seen=now, last_seen=now)
AlertNotification.objects.create(alert=alert, event="raised", severity="error")
Silence.objects.create(component="redis", condition=f"down-{user.pk}", reason="r", starts_at=now, ends_at=now + timedelta(hours=1),
                       created_by=user)
DrillRun.objects.create(kind="log_test", status="succeeded", deadline_at=now)
BreakerOverride.objects.create(state="open", reason="r", until=now + timedelta(minutes=5), forced_by=user)
print("seeded")
"""


def _local_apps() -> list[str]:
    """Our apps with migrations, in the order Django loads them (payments before health)."""
    installed = Path(sys.prefix).resolve()  # the virtualenv may live inside the checkout (.venv)
    return [config.label for config in apps.get_app_configs()
            if Path(config.path).resolve().is_relative_to(ROOT)
            and not Path(config.path).resolve().is_relative_to(installed)
            and (Path(config.path) / "migrations").is_dir()]


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_database("rollback") as url:
        yield url


def _manage(database_url: str, *args: str) -> str:
    env = service_env(DATABASE_URL=database_url, PROCESS_ROLE="release", HEALTH_PUBLISH_INTERVAL="0")
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def _unapplied(database_url: str, app: str) -> list[str]:
    shown = _manage(database_url, "showmigrations", app)
    return [line.strip() for line in shown.splitlines() if line.strip().startswith("[ ]")]


def test_each_app_migrates_to_zero_and_back_up_with_data_in_place(database_url: str) -> None:
    local = _local_apps()
    assert {"payments", "health"} <= set(local)
    _manage(database_url, "migrate", "--noinput")
    assert "seeded" in _manage(database_url, "shell", "--no-imports", "-c", SEED)

    for app in reversed(local):  # the app that depends on the others first
        _manage(database_url, "migrate", app, "zero", "--noinput")
        shown = _manage(database_url, "showmigrations", app)
        assert "[X]" not in shown, f"{app} still has applied migrations:\n{shown}"
        assert _count(database_url, "payments_payment" if app != "payments" else "auth_user") > 0, \
            "the other apps' data stays"
        _manage(database_url, "migrate", "--noinput")
        assert not _unapplied(database_url, app)
        # Back up: the schema takes new rows again.
        assert "seeded" in _manage(database_url, "shell", "--no-imports", "-c",
                                   SEED.replace("rollback-ops", f"rollback-ops-{app}")
                                   .replace("rollback-shop", f"rollback-shop-{app}"))
    # And the models match the migrations after the round trips.
    _manage(database_url, "makemigrations", "--check", "--dry-run")
