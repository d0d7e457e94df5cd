"""Deliveries refused at the door, counted by reason for the current UTC day: per process, and
for the fleet in Redis so that the console sees every web process's refusals."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, date, datetime

from config.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "payops:webhooks:refused"
KEPT_FOR = 2 * 86400  # s; yesterday's counts stay readable for a day
_counts: dict[date, Counter[str]] = {}  # this process's, for when Redis is away


def refusals_key(day: date) -> str:
    return f"{KEY_PREFIX}:{day.isoformat()}"


def _today() -> date:
    return datetime.now(UTC).date()


def refusal_count(*, code: str) -> None:
    """Counts one refusal; Redis being away never turns a refusal into an error."""
    day = _today()
    _counts.setdefault(day, Counter())[code] += 1
    for old in [d for d in _counts if d != day]:
        del _counts[old]
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            pipe.hincrby(refusals_key(day), code, 1)
            pipe.expire(refusals_key(day), KEPT_FOR)
            pipe.execute()
    except Exception:  # noqa: BLE001 - a lost count is better than a failed answer
        logger.warning("could not count a refused gateway event in Redis",
                       extra={"category": "gateway_event_refusal_uncounted", "reason": code})


def refusals_read() -> tuple[dict[str, int], bool]:
    """Today's refusals by reason for the fleet, and True; this process's alone and False when Redis is away."""
    day = _today()
    try:
        raw = get_redis().hgetall(refusals_key(day))
    except Exception:  # noqa: BLE001 - the console still shows what this process knows
        return dict(_counts.get(day, Counter())), False
    return {key.decode() if isinstance(key, bytes) else key: int(value) for key, value in raw.items()}, True
