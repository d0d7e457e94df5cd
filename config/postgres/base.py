"""PostgreSQL backend: Django's own, plus retries of the very first connection.

A process that starts while the database is restarting (a deploy, a failover) should wait
a little instead of crashing; once the first connection worked, the pool's own
reconnection logic takes over and a failure answers 503, not a retry loop in the request.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

logger = logging.getLogger(__name__)

_verified: set[str] = set()
_verified_lock = threading.Lock()


class DatabaseUnreachable(psycopg.OperationalError):
    """The server did not answer any of the start-up tries."""


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        if self.pool is not None and self.alias not in _verified:
            self._wait_for_server(dict(conn_params))
        return super().get_new_connection(conn_params)

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


