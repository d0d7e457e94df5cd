"""PostgreSQL backend: Django's own, plus retries of the very first connection and a
cheaper check of pooled connections.

A process that starts while the database is restarting (a deploy, a failover) should wait
a little instead of crashing; once the first connection worked, the pool's own
reconnection logic takes over and a failure answers 503, not a retry loop in the request.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable

import psycopg
from django.conf import settings
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from config import queueing
from config.postgres import leaks

logger = logging.getLogger(__name__)

_verified: set[str] = set()
_verified_lock = threading.Lock()


# psycopg_pool retries a failed connection after 1, 2, 4, 8 … s until `reconnect_timeout`:
# after a short outage one process may be back at once while its neighbour, between two
# doubled waits, answers 503s for seconds more. A steady half second between tries costs a refused connect per pending connection every
# half second while the server is away, and brings every process (and every pool: Django's
# and the answers lane) back within half a second of it. psycopg-pool is pinned; these are
# its own class attributes.
AttemptWithBackoff.INITIAL_DELAY = 0.5  # s
AttemptWithBackoff.DELAY_BACKOFF = 1.0


class DatabaseUnreachable(psycopg.OperationalError):
    """The server did not answer any of the start-up tries."""


# A connection given back to the pool less than this long ago was working then, so lending
# it again skips the check's round trip (two per payment: the connection goes back before the
# gateway call). One idle for longer is checked: after a server restart, every
# connection given back before it has been idle longer than this by the time the server is
# back, so none of them is lent unchecked.
RECENTLY_RETURNED = 1.0  # s
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()


def mark_returned(conn: psycopg.Connection) -> None:
    _returned_at[conn] = time.monotonic()


def check_unless_recent(conn: psycopg.Connection, pool: ConnectionPool | None = None) -> None:
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < RECENTLY_RETURNED:
        return
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        if pool is not None:
            # One dead idle connection almost always means the server restarted or failed
            # over, so the others are dead too. Replace them all now: left to the pool, a
            # request finds them one by one with its back-off in between (1, 2, 4, 8 s...)
            # and the first request after a failover waits out the whole acquire timeout.
            pool.drain()
        raise


def _getconn_for_request(pool: ConnectionPool, getconn: Callable[..., psycopg.Connection],
                         timeout: float | None = None) -> psycopg.Connection:
    # Django asks without a timeout: the pool's, less what the request already waited for a
    # gunicorn thread, so a 503 for an exhausted pool comes within the timeout of its arrival.
    return getconn(timeout if timeout is not None else queueing.pool_wait(pool.timeout))


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool = super().pool  # type: ignore[misc]  # Django 5.1's pool property; django-stubs lacks it
        # Django builds the pool with psycopg_pool's check when CONN_HEALTH_CHECKS is on and
        # takes no check of ours; swap it in once (psycopg-pool is pinned; if the attribute
        # ever moves, the pool keeps its own check, which is only slower).
        if pool is not None and not getattr(pool, "_payops_ready", False):
            if getattr(pool, "_check", None) is ConnectionPool.check_connection:
                pool._check = functools.partial(check_unless_recent, pool=pool)
            # A second thread wrapping it again is harmless: the outer call passes a timeout.
            pool.getconn = functools.partial(_getconn_for_request, pool, pool.getconn)
            pool._payops_ready = True
        return pool

    def _close(self) -> None:
        if self.connection is not None and self.pool is not None:
            mark_returned(self.connection)
            leaks.returned(self.connection)
        super()._close()  # type: ignore[misc]  # Django's private close, which gives the connection back

    def get_new_connection(self, conn_params):
        if self.pool is not None and self.alias not in _verified:
            self._wait_for_server(dict(conn_params))
        conn = super().get_new_connection(conn_params)
        if self.pool is not None:
            leaks.lent(conn)
        return conn

    def _wait_for_server(self, conn_params: dict) -> None:
        with _verified_lock:
            if self.alias in _verified:
                return
            conn_params.pop("pool", None)
            conn_params.setdefault("connect_timeout", 5)
            tries = max(1, getattr(settings, "DB_STARTUP_RETRIES", 3))
            delay = getattr(settings, "DB_STARTUP_RETRY_DELAY", 1.0)
            for attempt in range(1, tries + 1):
                try:
                    psycopg.connect(**conn_params).close()
                except psycopg.OperationalError as exc:
                    logger.warning(
                        "database not reachable (try %s of %s)", attempt, tries,
                        extra={"category": "db_unavailable", "attempt": attempt},
                    )
                    if attempt == tries:
                        host = conn_params.get("host", "?")
                        port = conn_params.get("port", 5432)
                        raise DatabaseUnreachable(
                            f"database at {host}:{port} unreachable after {tries} tries: "
                            f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"
                        ) from exc
                    time.sleep(delay)
                else:
                    _verified.add(self.alias)
                    return


