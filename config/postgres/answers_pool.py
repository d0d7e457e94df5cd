"""A small second pool for one kind of write: a payment's answer from the gateway.

A payment gives its pooled connection back before the gateway call (a slow gateway must not
hold the database pool) and needs one again to record the answer. In the main pool that
second wait queues behind every new request, so under pool pressure a payment the gateway
already charged would wait a second acquire timeout before its 503, or, with both waits
sharing one timeout, hardly ever record its answer at all. Answers take this lane instead: a few connections per process used only
by writes that take a millisecond, so they never wait behind new requests, and a request's
503 for an exhausted pool comes from its first wait alone.

Not Django's: a second database alias would be a second ORM connection that tests block and
routers must know about; the lane runs raw statements only (payments/services/create_path_sql.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
from django.conf import settings
from django.db import connections
from psycopg_pool import ConnectionPool

from config.postgres.base import check_unless_recent, mark_returned

_lock = threading.Lock()
_pool: ConnectionPool | None = None


def _answers_pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                params = connections["default"].get_connection_params()  # the test database in tests
                params.update(autocommit=True, application_name=f"payops-{settings.PROCESS_ROLE}-answers")
                pool = ConnectionPool(kwargs=params, min_size=1, max_size=settings.DB_ANSWER_CONNECTIONS,
                                      open=False, timeout=settings.DB_CONNECTION_TIMEOUT,
                                      max_idle=settings.DB_IDLE_TIMEOUT, name=f"payops-{settings.PROCESS_ROLE}-answers",
                                      check=lambda conn: check_unless_recent(conn, pool))
                pool.open()
                _pool = pool
    return _pool


@contextlib.contextmanager
def answer_connection() -> Iterator[psycopg.Connection]:
    """A connection of the lane, in autocommit, for one statement."""
    with _answers_pool().connection() as conn:
        try:
            yield conn
        finally:
            mark_returned(conn)  # back within the second: lent again unchecked


def answers_pool_existing() -> ConnectionPool | None:
    """This process's lane if it recorded an answer yet (for its pool statistics), else None."""
    return _pool


def answers_pool_close() -> None:
    """Tests that recreate the database, and process shutdown."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
            _pool = None
