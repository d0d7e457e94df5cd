"""CELERY_VISIBILITY_TIMEOUT: how long a dead worker's tasks stay invisible before another worker
gets them; read from the environment and checked against what a worker may hold that long."""

from __future__ import annotations

from tests.test_settings import manage

SHOW = ("from django.conf import settings as s; o = s.CELERY_BROKER_TRANSPORT_OPTIONS;"
        "print(o['visibility_timeout'], o['unacked_restore_interval'], o['unacked_restore_throttle'])")


def test_default_is_an_hour_and_every_worker_looks_for_timed_out_tasks_every_ten_seconds() -> None:
    result = manage("shell", "--no-imports", "-c", SHOW, DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3600", "10", "1"]


def test_a_short_timeout_from_the_environment_is_looked_for_more_often() -> None:
    result = manage("shell", "--no-imports", "-c", SHOW, DJANGO_DEBUG="true", CELERY_VISIBILITY_TIMEOUT="20",
                    CELERY_TASK_TIME_LIMIT="5", CELERY_TASK_SOFT_TIME_LIMIT="4", PAYMENT_SETTLE_DELAYS="1,2",
                    PAYMENT_TIMEOUT="1000", PAYMENT_DEADLINE="3000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "2", "1"]


def test_a_timeout_shorter_than_a_task_plus_its_countdown_stops_start_up_naming_the_variable() -> None:
    # 150 s time limit + 1800 s settlement delay: 1900 s would deliver a waiting settlement twice.
    result = manage("check", DJANGO_DEBUG="true", CELERY_VISIBILITY_TIMEOUT="1900")
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT" in result.stderr and "PAYMENT_SETTLE_DELAYS" in result.stderr
    # ...and a settlement delay beyond the timeout as well.
    result = manage("check", DJANGO_DEBUG="true", PAYMENT_SETTLE_DELAYS="60,300,3600")
    assert result.returncode != 0 and "CELERY_VISIBILITY_TIMEOUT" in result.stderr


def test_a_timeout_that_is_not_a_number_names_the_variable() -> None:
    result = manage("check", DJANGO_DEBUG="true", CELERY_VISIBILITY_TIMEOUT="1h")
    assert result.returncode != 0 and "CELERY_VISIBILITY_TIMEOUT must be an integer" in result.stderr
