"""What went wrong with the database, in words ops use, and how often it happened here."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from django.conf import settings
from django.db import DatabaseError, connections
from psycopg_pool import PoolTimeout, TooManyRequests

from config import queueing

logger = logging.getLogger(__name__)

_counts: Counter[str] = Counter()
_lock = threading.Lock()

POOL_EXHAUSTED = "db_pool_exhausted"
UNAVAILABLE = "db_unavailable"


def classify_db_error(exc: BaseException) -> str | None:
    """`db_pool_exhausted`, `db_unavailable`, or None when it is not the database's fault."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if not any(isinstance(e, DatabaseError) or type(e).__module__.startswith("psycopg") for e in chain):
        return None
    if any(isinstance(e, (PoolTimeout, TooManyRequests)) for e in chain):
        # A pool that could not even grow to its maximum timed out because the server is
        # away, not because every connection is busy.
        pool = getattr(connections["default"], "pool", None)
        if pool is not None:
            stats = pool.get_stats()
            # Exhausted means every connection is lent out; right after the server dropped
            # them the pool may still count them, but none is in use.
            if stats.get("pool_size", 0) - stats.get("pool_available", 0) >= pool.max_size:
                return POOL_EXHAUSTED
        return UNAVAILABLE
    from django.db import InterfaceError, OperationalError

    if any(isinstance(e, (OperationalError, InterfaceError)) for e in chain):
        return UNAVAILABLE
    return None


def record_db_failure(category: str, *, path: str = "") -> None:
    with _lock:
        _counts[category] += 1
    logger.error(
        "database %s", "pool exhausted" if category == POOL_EXHAUSTED else "unavailable",
        # queued_ms: time the request waited for a gunicorn thread before it could ask the
        # pool; often high means too few threads per worker, not too few connections.
        extra={"category": category, "path": path, "queued_ms": round(queueing.queued_for() * 1000, 1)},
    )


def db_failure_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def retry_after_seconds() -> int:
    """A client should come back after roughly one acquire timeout."""
    return max(1, min(30, round(settings.DB_CONNECTION_TIMEOUT)))
