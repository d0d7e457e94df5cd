"""Deliveries refused at the door, counted by reason: per process, and for the fleet in
Redis so that the console sees every web process's refusals."""

from __future__ import annotations

import logging
from collections import Counter

from config.redis import get_redis

logger = logging.getLogger(__name__)

REDIS_KEY = "payops:webhooks:refused"
_counts: Counter[str] = Counter()  # this process's, for when Redis is away


def refusal_count(*, code: str) -> None:
    """Counts one refusal; Redis being away never turns a refusal into an error."""
    _counts[code] += 1
    try:
        get_redis().hincrby(REDIS_KEY, code, 1)
    except Exception:  # noqa: BLE001 - a lost count is better than a failed answer
        logger.warning("could not count a refused gateway event in Redis",
                       extra={"category": "gateway_event_refusal_uncounted", "reason": code})


def refusals_read() -> tuple[dict[str, int], bool]:
    """Refusals by reason for the fleet, and True; this process's alone and False when Redis is away."""
    try:
        raw = get_redis().hgetall(REDIS_KEY)
    except Exception:  # noqa: BLE001 - the console still shows what this process knows
        return dict(_counts), False
    return {key.decode(): int(value) for key, value in raw.items()}, True
