"""Once per tick (config/ticks.py): beat stamps its messages, the first message of a tick wins
its claim, a redelivery of that same message gets through, a copy from a second beat does not."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule

from config import ticks
from config.celery import app
from config.redis import get_redis


@pytest.fixture
def scope() -> Iterator[str]:
    name = f"test:{uuid.uuid4().hex[:8]}"
    yield name
    for key in get_redis().scan_iter(f"payops:{name}:tick:*"):
        get_redis().delete(key)


def test_the_first_holder_wins_and_a_second_beats_copy_is_skipped_with_an_info_line(scope, caplog) -> None:
    caplog.set_level(logging.INFO, logger="config.ticks")
    assert ticks.tick_claim(scope=scope, tick=1200, holder="task-a", ttl=60)
    assert not ticks.tick_claim(scope=scope, tick=1200, holder="task-b", ttl=60)
    assert ticks.tick_claim(scope=scope, tick=1230, holder="task-b", ttl=60)  # the next tick is free
    skipped = [r for r in caplog.records if getattr(r, "category", "") == "tick_skipped"]
    assert len(skipped) == 1 and skipped[0].levelno == logging.INFO
    assert skipped[0].taken_by == "task-a" and skipped[0].scope == scope


def test_a_redelivery_of_the_same_message_gets_through_its_own_claim(scope) -> None:
    # A worker killed mid-task left its claim behind; the redelivered message has the same id.
    assert ticks.tick_claim(scope=scope, tick=1200, holder="task-a", ttl=60)
    assert ticks.tick_claim(scope=scope, tick=1200, holder="task-a", ttl=60)
    assert get_redis().ttl(f"payops:{scope}:tick:1200") > 0


def test_without_redis_everyone_proceeds(settings) -> None:
    scope = "test:no-redis"
    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        assert ticks.tick_claim(scope=scope, tick=1200, holder="task-a", ttl=60)
        assert ticks.tick_claim(scope=scope, tick=1200, holder="task-b", ttl=60)
    finally:
        get_redis.cache_clear()


def test_ticks_align_on_the_epoch_so_two_beats_agree() -> None:
    assert ticks.tick_of(1_000_000_049.9, 30) == 1_000_000_020
    assert ticks.tick_of(1_000_000_050.0, 30) == 1_000_000_050


class _Request:
    def __init__(self, task_id: str, headers: dict[str, Any] | None = None, **attrs: Any) -> None:
        self.id, self.headers = task_id, headers
        self.__dict__.update(attrs)


def test_the_tick_comes_from_when_beat_sent_the_message_not_from_now(scope) -> None:
    sent_at = time.time() - 95  # redelivered long after it was sent
    header = ticks.beat_headers("health-check", 30, sent_at)
    as_attribute = ticks.beat_tick(_Request("t1", **header))  # how a worker's request carries it
    in_headers = ticks.beat_tick(_Request("t1", headers=header))  # how Task.apply carries it
    assert as_attribute == in_headers
    assert as_attribute.tick == ticks.tick_of(sent_at, 30) < ticks.tick_of(time.time(), 30)
    assert ticks.beat_tick(_Request("t2")) is None  # not sent by beat: no tick
    assert ticks.once_per_tick(_Request("t2"), scope=scope)  # ...and no claim


def test_once_per_tick_lets_one_message_per_tick_through(scope) -> None:
    header = ticks.beat_headers("payment-settle-sweep", 60)
    assert ticks.once_per_tick(_Request("first", **header), scope=scope)
    assert not ticks.once_per_tick(_Request("second", **header), scope=scope)
    assert ticks.once_per_tick(_Request("first", **header), scope=scope)


@pytest.mark.parametrize(("run_every", "period"), [(schedule(30.0), 30.0), (crontab(hour=3, minute=17), 60.0)])
def test_beat_stamps_every_message_with_its_entry_moment_and_period(tmp_path, monkeypatch, run_every,
                                                                    period) -> None:
    sent: list[dict[str, Any]] = []
    task = app.tasks["health.tasks.health_check_run"]
    monkeypatch.setattr(task, "apply_async", lambda args, kwargs, **options: sent.append(options))
    scheduler = ticks.TickScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    entry = ScheduleEntry(name="health-check", task=task.name, schedule=run_every, kwargs={"interval": 30},
                          options={"expires": 24.0}, app=app)
    before = time.time()
    scheduler.apply_async(entry, producer=object(), advance=False)
    header = sent[0]["headers"][ticks.HEADER]
    assert header["entry"] == "health-check" and header["period"] == period
    assert before <= header["sent_at"] <= time.time()
    assert sent[0]["headers"]["celery_beat_task"] is True and sent[0]["expires"] == 24.0
    assert "headers" not in entry.options  # the entry itself is left as it was


def test_the_configured_beat_scheduler_is_the_stamping_one() -> None:
    assert app.conf.beat_scheduler == "config.ticks:TickScheduler"
