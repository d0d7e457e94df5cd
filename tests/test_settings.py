"""The environment contract: defaults, refusals that name the variable, production checks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

PROD_SECRET = "k3y-" + "x9Zq!pL2#vB7$wN4%" * 4


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DB_", "PAYMENT_", "HTTP_", "ALERT_"))}
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT), "DJANGO_READ_DOTENV": "false"})
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_MAX_CONNECTIONS", "abc"),
        ("DB_CONNECTION_TIMEOUT", "-5"),
        ("PAYMENT_TIMEOUT", "0"),
        ("PAYMENT_RETRY_ATTEMPTS", "1.5"),
        ("HEALTH_CHECK_INTERVAL", "soon"),
        ("ALERT_CRITICAL_THRESHOLD", "150"),
        ("ALERT_LATENCY_ERROR", "150"),
        ("ALERT_GATEWAY_MIN_CALLS", "0"),
        ("ALERT_DECLINE_SPIKE_FACTOR", "1"),
        ("DJANGO_DEBUG", "perhaps"),
        ("REDIS_URL", "localhost:6379"),
        ("PAYMENT_GATEWAY_WEBHOOK_SECRET", "whsec_short"),
        ("PAYMENT_CONCURRENCY_MAX", "11"),  # above PAYMENT_POOL_MAXSIZE
        ("PAYMENT_CONCURRENCY_MIN", "0"),
        ("PAYMENT_SLOW_CALL_MS", "fast"),
        ("BREAKER_SLOW_CALL_MS", "8000"),  # gone: a slow success is no longer a failure
        ("PAYMENT_QUEUE_TIMEOUT", "30000"),  # not below PAYMENT_DEADLINE
        ("GUNICORN_THREADS", "10"),  # not above the gateway concurrency limit (10)
        ("WEB_PROBE_THREADS", "0"),
    ],
)
def test_bad_value_stops_startup_naming_the_variable(name: str, value: str) -> None:
    result = manage("check", **{"DJANGO_DEBUG": "true", name: value})
    assert result.returncode == 2
    assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_min_above_max_is_refused() -> None:
    result = manage("check", DJANGO_DEBUG="true", DB_MIN_CONNECTIONS="30", DB_MAX_CONNECTIONS="20")
    assert result.returncode == 2
    assert "DB_MIN_CONNECTIONS" in result.stderr and "DB_MAX_CONNECTIONS" in result.stderr


def test_warning_threshold_must_be_below_critical() -> None:
    result = manage("check", DJANGO_DEBUG="true", ALERT_WARNING_THRESHOLD="95")
    assert result.returncode == 2
    assert "ALERT_WARNING_THRESHOLD" in result.stderr


def test_latency_warning_must_be_below_its_error() -> None:
    result = manage("check", DJANGO_DEBUG="true", ALERT_LATENCY_WARNING="80")
    assert result.returncode == 2
    assert "ALERT_LATENCY_WARNING must be below ALERT_LATENCY_ERROR" in result.stderr
    result = manage("check", DJANGO_DEBUG="true", ALERT_TIMEOUT_RATE_WARNING="10")
    assert result.returncode == 2
    assert "ALERT_TIMEOUT_RATE_WARNING must be below ALERT_TIMEOUT_RATE_ERROR" in result.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": PROD_SECRET}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": PROD_SECRET, "DJANGO_ALLOWED_HOSTS": "pay.example.com"}, "PAYMENT_GATEWAY_API_KEY"),
    ],
)
def test_production_refuses_missing_or_weak_secrets(env: dict, named: str) -> None:
    result = manage("check", DJANGO_DEBUG="false", **env)
    assert result.returncode == 2
    assert named in result.stderr


def test_production_settings_pass_check_deploy_without_warnings() -> None:
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=PROD_SECRET,
        DJANGO_ALLOWED_HOSTS="pay.example.com",
        PAYMENT_GATEWAY_API_KEY="sk_live_from_vault",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_defaults_follow_the_contract(settings) -> None:
    assert settings.PAYMENT_RETRY_ATTEMPTS == 3
    assert settings.PAYMENT_POOL_MAXSIZE == 10
    assert settings.DB_MAX_RETRIES == 3
    assert settings.HTTP_MAX_CONNECTIONS == 100
    assert settings.HTTP_MAX_CONNECTIONS_PER_HOST == 20
    assert settings.HTTP_REQUEST_TIMEOUT == 60.0
    assert settings.HTTP_RETRY_ATTEMPTS == 3
    assert settings.CLOUDWATCH_TIMEOUT == 15.0
    assert settings.ALERT_WARNING_THRESHOLD == 80
    assert settings.ALERT_CRITICAL_THRESHOLD == 90
    # Gateway p95 latency: a warning above half the read timeout, an error above 80 % of it.
    assert (settings.ALERT_LATENCY_WARNING, settings.ALERT_LATENCY_ERROR) == (50, 80)
    assert settings.ALERT_GATEWAY_MIN_CALLS == 5
    assert (settings.ALERT_TIMEOUT_RATE_WARNING, settings.ALERT_TIMEOUT_RATE_ERROR) == (2, 10)
    assert (settings.ALERT_PAYMENTS_MIN_VOLUME, settings.ALERT_SUCCESS_DROP) == (20, 10)
    assert (settings.ALERT_DECLINE_SPIKE_FACTOR, settings.ALERT_DECLINE_SPIKE_MIN) == (3, 10)
    assert settings.HEALTH_CHECK_INTERVAL == 30
    db = settings.DATABASES["default"]
    assert db["CONN_MAX_AGE"] == 0
    assert db["OPTIONS"]["pool"]["min_size"] == 5
    assert db["OPTIONS"]["pool"]["max_size"] == 20
    assert db["OPTIONS"]["pool"]["timeout"] == 30.0
    assert db["OPTIONS"]["pool"]["max_idle"] == 300.0


def test_prepared_statements_are_off_behind_pgbouncer() -> None:
    code = ("from django.conf import settings as s; d = s.DATABASES['default'];"
            "print(d['OPTIONS']['prepare_threshold'], d['DISABLE_SERVER_SIDE_CURSORS'])")
    direct = manage("shell", "--no-imports", "-c", code, DJANGO_DEBUG="true")
    bouncer = manage("shell", "--no-imports", "-c", code, DJANGO_DEBUG="true", DB_PGBOUNCER="true")
    assert direct.returncode == bouncer.returncode == 0, direct.stderr + bouncer.stderr
    assert direct.stdout.split() == ["1000000", "False"]  # only statements asking for it are prepared
    assert bouncer.stdout.split() == ["None", "True"]


def test_timeouts_in_ms_become_seconds() -> None:
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.conf import settings as s; print(s.PAYMENT_TIMEOUT, s.PAYMENT_RETRY_DELAY, s.DB_CONNECTION_TIMEOUT)",
        DJANGO_DEBUG="true", PAYMENT_TIMEOUT="10000", PAYMENT_RETRY_DELAY="250", DB_CONNECTION_TIMEOUT="1500",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10.0", "0.25", "1.5"]


def test_celery_beat_runs_the_health_check_each_interval_and_expires_before_the_next() -> None:
    result = manage(
        "shell", "--no-imports", "-c",
        "from config.celery import app; e = app.conf.beat_schedule['health-check'];"
        "print(e['task'], e['schedule'], e['options']['expires'], app.conf.worker_prefetch_multiplier,"
        " app.conf.broker_transport_options['visibility_timeout'] > app.conf.task_time_limit)",
        DJANGO_DEBUG="true", HEALTH_CHECK_INTERVAL="30",
    )
    assert result.returncode == 0, result.stderr
    task, schedule, expires, prefetch, visibility_ok = result.stdout.split()
    assert task == "health.tasks.health_check_run"
    assert float(schedule) == 30.0
    assert 0 < float(expires) < 30.0
    assert prefetch == "1"
    assert visibility_ok == "True"


def test_contract_defaults_without_any_environment() -> None:
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.conf import settings as s; import importlib;"
        "g = importlib.import_module('config.gunicorn');"
        "print(s.PAYMENT_TIMEOUT, s.PAYMENT_RETRY_DELAY, s.PAYMENT_CONNECT_TIMEOUT, s.DB_CONNECTION_TIMEOUT,"
        " s.DB_IDLE_TIMEOUT, s.DB_RETRY_DELAY, g.timeout > s.PAYMENT_DEADLINE,"
        " issubclass(importlib.import_module('gunicorn.util').load_class(g.worker_class),"
        " importlib.import_module('gunicorn.workers.gthread').ThreadWorker))",
        DJANGO_DEBUG="true",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10.0", "1.0", "3.0", "30.0", "300.0", "1.0", "True", "True"]


def test_gateway_concurrency_defaults_follow_the_pool() -> None:
    code = ("from django.conf import settings as s;"
            "print(s.PAYMENT_CONCURRENCY_MAX, s.PAYMENT_CONCURRENCY_MIN, s.PAYMENT_SLOW_CALL)")
    default = manage("shell", "--no-imports", "-c", code, DJANGO_DEBUG="true")
    bigger = manage("shell", "--no-imports", "-c", code, DJANGO_DEBUG="true", PAYMENT_POOL_MAXSIZE="40")
    assert default.returncode == bigger.returncode == 0, default.stderr + bigger.stderr
    assert default.stdout.split() == ["10", "2", "8.0"]
    assert bigger.stdout.split() == ["40", "2", "8.0"]
    threads = ("from django.conf import settings as s; import importlib;"
               "print(s.GUNICORN_THREADS, importlib.import_module('config.gunicorn').threads)")
    sized = manage("shell", "--no-imports", "-c", threads, DJANGO_DEBUG="true", PAYMENT_POOL_MAXSIZE="40")
    assert sized.returncode == 0, sized.stderr
    assert sized.stdout.split() == ["80", "80"]  # sized for the gateway, not for DB_MAX_CONNECTIONS
