"""Pool statistics of every web and worker process, shared through Redis.

A check runs in one worker and sees only that worker's pools, so each process publishes its
own figures: one JSON document per host and pid (``payops:fleet:proc:<host>:<pid>``) that
expires after three publication intervals, plus an index (a sorted set by publication time)
so readers need no SCAN. The thread that publishes is in health/publisher.py.

Counters (requests, waits, timeouts, errors) are cumulative in the pools; the document
carries them and their difference over the last ``window`` seconds, computed here from the
history of earlier collections, so nobody ever calls ``pop_stats()`` (which would reset them
for every other reader).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from typing import Any

import redis
from django.conf import settings

from config.redis import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "payops:fleet"
INDEX_KEY = f"{KEY_PREFIX}:index"
INDEX_HORIZON = 3600  # s an index entry outlives its last publication before it is swept
TTL_INTERVALS = 3  # a document expires after this many publication intervals without news


def process_id() -> str:
    return f"{settings.HOSTNAME}:{os.getpid()}"


def doc_key(process: str) -> str:
    return f"{KEY_PREFIX}:proc:{process}"


def publish_interval() -> int:
    return settings.HEALTH_PUBLISH_INTERVAL


def ttl_seconds() -> int:
    return max(1, publish_interval()) * TTL_INTERVALS


def delta_window() -> float:
    """Every check must see every error once: the window covers a check interval plus the
    lag of one publication."""
    return float(settings.HEALTH_CHECK_INTERVAL + max(1, publish_interval()))


def write(doc: dict[str, Any], *, client: redis.Redis | None = None) -> None:
    client = client or get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.set(doc_key(doc["process"]), json.dumps(doc, separators=(",", ":")), ex=ttl_seconds())
    pipe.zadd(INDEX_KEY, {doc["process"]: doc["at"]})
    pipe.execute()


def read_all(*, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """Every live process's latest document (expired ones are gone by themselves)."""
    client = client or get_redis()
    horizon = time.time() - INDEX_HORIZON
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(INDEX_KEY, "-inf", horizon)
    pipe.zrangebyscore(INDEX_KEY, horizon, "+inf")
    _, members = pipe.execute()
    if not members:
        return []
    raw = client.mget([doc_key(m.decode() if isinstance(m, bytes) else m) for m in members])
    return [json.loads(item) for item in raw if item]


def forget(process: str, *, client: redis.Redis | None = None) -> None:
    client = client or get_redis()
    pipe = client.pipeline(transaction=False)
    pipe.delete(doc_key(process))
    pipe.zrem(INDEX_KEY, process)
    pipe.execute()


class CounterHistory:
    """Earlier values of this process's counters, to turn totals into recent differences."""

    def __init__(self) -> None:
        self._entries: deque[tuple[float, dict[str, float]]] = deque()
        self._lock = threading.Lock()

    def recent(self, now: float, counters: dict[str, float], window: float) -> dict[str, float]:
        with self._lock:
            entries = self._entries
            while len(entries) >= 2 and entries[1][0] <= now - window:
                entries.popleft()
            # The newest collection at least one window old is the baseline; while there is
            # none yet, everything counted so far is recent (a zero baseline never hides an
            # error that happened before publishing started).
            base = entries[0][1] if entries and entries[0][0] <= now - window else {}
            entries.append((now, dict(counters)))
        # A total below its baseline was restarted (a new gateway client, say): all of it is recent.
        return {key: round(value - base.get(key, 0) if value >= base.get(key, 0) else value, 3)
                for key, value in counters.items()}


history = CounterHistory()


def _after_fork_in_child() -> None:
    # A forked child has another pid: its counters start afresh.
    global history
    history = CounterHistory()


os.register_at_fork(after_in_child=_after_fork_in_child)
