"""A health tick whose worker died mid-run: the redelivered message (same task id) runs the very
tick it was sent for, while a second beat's copy of that tick is skipped; the daily prune runs
once per tick too."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from config import ticks
from config.redis import get_redis
from health.models import ComponentSnapshot, HealthCheckRun
from health.services.runs import health_check_run
from health.tasks import _backoff
from health.tasks import health_check_run as health_check_task
from health.tasks import health_history_prune as prune_task
from tests.health.conftest import StubCheck

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 30


def _tick(at: float) -> datetime:
    return datetime.fromtimestamp(ticks.tick_of(at, INTERVAL), tz=UTC)


def test_a_redelivered_message_runs_its_tick_although_its_dead_worker_holds_the_claim() -> None:
    sent_at = datetime.now(UTC)
    # The first delivery claimed the tick, then its worker was killed before storing anything.
    assert ticks.tick_claim(scope="health", tick=int(_tick(sent_at.timestamp()).timestamp()), holder="task-1",
                            ttl=ticks.claim_ttl(INTERVAL))
    run = health_check_run(interval=INTERVAL, sent_at=sent_at, claim_id="task-1", checks=[StubCheck("redis")])
    assert run is not None and run.tick == _tick(sent_at.timestamp())
    assert run.snapshots.count() == 1


def test_a_second_beats_copy_of_the_tick_is_skipped_and_logged(caplog) -> None:
    caplog.set_level(logging.INFO)
    sent_at = datetime.now(UTC)
    first = health_check_run(interval=INTERVAL, sent_at=sent_at, claim_id="beat-1-msg", checks=[StubCheck("redis")])
    second = health_check_run(interval=INTERVAL, sent_at=sent_at + timedelta(seconds=0.5), claim_id="beat-2-msg",
                              checks=[StubCheck("redis")])
    assert first is not None and second is None
    assert HealthCheckRun.objects.count() == 1 and ComponentSnapshot.objects.count() == 1
    assert [r.levelno for r in caplog.records if getattr(r, "category", "") == "tick_skipped"] == [logging.INFO]


def test_a_late_redelivery_runs_the_tick_it_was_sent_for_not_the_current_one() -> None:
    sent_at = datetime.now(UTC) - timedelta(seconds=3 * INTERVAL)
    run = health_check_run(interval=INTERVAL, sent_at=sent_at, claim_id="late", checks=[StubCheck("redis")])
    assert run.tick == _tick(sent_at.timestamp())
    assert run.started_at > sent_at + timedelta(seconds=2 * INTERVAL)  # measured now, filed under its tick


def test_the_task_takes_its_tick_from_beats_header_and_its_claim_from_its_id() -> None:
    sent_at = time.time() - 2 * INTERVAL
    headers = ticks.beat_headers("health-check", INTERVAL, sent_at)
    task_id = str(uuid.uuid4())
    health_check_task.apply(kwargs={"interval": INTERVAL}, headers=headers, task_id=task_id)
    run = HealthCheckRun.objects.get()
    assert run.tick == _tick(sent_at)
    assert get_redis().get(f"payops:health:tick:{int(run.tick.timestamp())}").decode() == task_id
    # The same tick again from another message (the second beat): nothing more.
    health_check_task.apply(kwargs={"interval": INTERVAL}, headers=headers, task_id=str(uuid.uuid4()))
    assert HealthCheckRun.objects.count() == 1


@pytest.fixture
def fresh_prune_ticks() -> Iterator[None]:
    yield
    for key in get_redis().scan_iter("payops:health:prune:tick:*"):
        get_redis().delete(key)


def test_the_daily_prune_runs_once_per_tick(caplog, fresh_prune_ticks) -> None:
    caplog.set_level(logging.INFO)
    headers = ticks.beat_headers("health-prune", 60.0)
    first = prune_task.apply(headers=headers, task_id=str(uuid.uuid4())).get()
    second = prune_task.apply(headers=headers, task_id=str(uuid.uuid4())).get()
    assert first == second == {"snapshots": 0, "runs": 0, "notifications": 0, "drill_runs": 0}
    categories = [getattr(r, "category", "") for r in caplog.records]
    assert categories.count("health_pruned") == 1 and categories.count("tick_skipped") == 1


def test_a_notification_retry_never_waits_as_long_as_the_visibility_timeout(settings) -> None:
    settings.CELERY_VISIBILITY_TIMEOUT = 20
    assert _backoff(0) == 10 and _backoff(5) == 10
    settings.CELERY_VISIBILITY_TIMEOUT = 3600
    assert _backoff(0) == 10 and _backoff(3) == 80 and _backoff(10) == 300
