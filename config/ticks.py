"""Once per tick: a periodic task runs at most once for each tick of its beat entry.

Beat stamps every message it sends with the entry's name, the moment it was sent and the
entry's period (`TickScheduler`); the task derives its tick from that moment, not from when
it happens to run, so a message redelivered after its worker died still runs the tick it
was sent for. The first message to claim (entry, tick) in Redis wins; the claim holds the
Celery task id, so a redelivery of that same message (same id) may proceed while a copy
from a second beat (another id) is skipped and logged at INFO (`tick_skipped`). With Redis
away everyone proceeds and the task's own guard decides (the health run's unique tick in
PostgreSQL; the sweep and the prune are idempotent).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import schedule as interval_schedule

logger = logging.getLogger(__name__)

HEADER = "payops_tick"
KEY = "payops:{scope}:tick:{tick}"
CRON_PERIOD = 60.0  # s; crontab entries fire on the minute, so two beats agree on the minute


@dataclass(frozen=True)
class BeatTick:
    entry: str
    sent_at: float  # epoch s, beat's clock when it sent the message
    period: float  # s

    @property
    def tick(self) -> int:
        return tick_of(self.sent_at, self.period)


def tick_of(at: float, period: float) -> int:
    """The start (epoch s) of the period-long tick `at` falls in; ticks align on the epoch so
    that every beat, whenever it started, agrees on them."""
    return int(at // period * period)


def beat_headers(entry: str, period: float, sent_at: float | None = None) -> dict[str, Any]:
    """The header beat adds to a message of `entry` (scripts that stand in for beat use it too)."""
    return {HEADER: {"entry": entry, "sent_at": time.time() if sent_at is None else sent_at, "period": period}}


def entry_period(entry: ScheduleEntry) -> float:
    if isinstance(entry.schedule, interval_schedule):
        return max(1.0, entry.schedule.run_every.total_seconds())
    return CRON_PERIOD


class TickScheduler(PersistentScheduler):
    """Beat's default scheduler, plus the tick header on every message it sends."""

    def setup_schedule(self) -> None:
        # A platform starts beat in a fresh checkout: the schedule file's folder (var/ in the
        # Procfile) is made here rather than by a bootstrap script that a platform never runs.
        Path(self.schedule_filename).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()

    def apply_async(self, entry: ScheduleEntry, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        entry = self.reserve(entry) if advance else entry
        stamped = copy.copy(entry)
        headers = {**(entry.options.get("headers") or {}), **beat_headers(entry.name, entry_period(entry))}
        stamped.options = {**entry.options, "headers": headers}
        return super().apply_async(stamped, producer, advance=False, **kwargs)


def beat_tick(request: Any) -> BeatTick | None:
    """The tick a task's message was sent for by beat; None for a message beat did not send
    (sent by hand, by a script, or by a beat without `TickScheduler`)."""
    raw = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    if not isinstance(raw, dict):
        return None
    try:
        return BeatTick(entry=str(raw["entry"]), sent_at=float(raw["sent_at"]), period=float(raw["period"]))
    except (KeyError, TypeError, ValueError):
        return None


def tick_claim(*, scope: str, tick: int, holder: str, ttl: int, retry: bool = True) -> bool:
    """True for the first holder of (scope, tick) and for that same holder again (a
    redelivery); False, logged at INFO, for anyone else. True when Redis is away."""
    from config.redis import get_redis

    key = KEY.format(scope=scope, tick=tick)
    try:
        client = get_redis()
        if client.set(key, holder, nx=True, ex=max(1, ttl)):
            logger.info("%s tick %s claimed by %s", scope, _iso(tick), holder,
                        extra={"category": "tick_claimed", "scope": scope, "tick": _iso(tick), "holder": holder})
            return True
        current = client.get(key)
    except Exception as exc:  # noqa: BLE001 - the claim is an optimisation over the task's own guard
        logger.warning("%s tick claim unavailable (%s); the task's own guard decides", scope,
                       exc.__class__.__name__, extra={"category": "tick_claim_unavailable", "scope": scope})
        return True
    current = current.decode() if isinstance(current, bytes) else current
    if current == holder:
        logger.info("%s tick %s resumed by a redelivery of %s", scope, _iso(tick), holder,
                    extra={"category": "tick_redelivered", "scope": scope, "tick": _iso(tick), "holder": holder})
        return True
    if current is None and retry:  # expired between the two calls: try once more
        return tick_claim(scope=scope, tick=tick, holder=holder, ttl=ttl, retry=False)
    logger.info("%s tick %s already taken by %s; skipped", scope, _iso(tick), current,
                extra={"category": "tick_skipped", "scope": scope, "tick": _iso(tick), "holder": holder,
                       "taken_by": current})
    return False


def once_per_tick(request: Any, *, scope: str) -> bool:
    """For a periodic task: False when this beat message's tick was already taken by another
    message; True for a first claim, a redelivery, or a message beat did not send."""
    sent = beat_tick(request)
    if sent is None:
        return True
    return tick_claim(scope=scope, tick=sent.tick, holder=str(request.id), ttl=claim_ttl(sent.period))


def claim_ttl(period: float) -> int:
    """Long enough to outlive every copy of one tick's message (they arrive within the period)."""
    return int(max(60.0, 3 * period))


def _iso(tick: int) -> str:
    return datetime.fromtimestamp(tick, tz=UTC).isoformat()
