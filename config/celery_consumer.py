"""The Celery worker's consumer: it survives losing the broker and is back on it within two
seconds of its return. Used through `CELERY_WORKER_CONSUMER`.

Two defects of Celery 5.7.0 / kombu 5.7.0 with the Redis broker, both found by the Redis-down
drill (bench/fleet/redis_down.py) and held by tests/test_celery.py:

- A worker holding an unacknowledged task when the connection dropped (a task running under
  acks_late, or one waiting for its countdown) died: Celery collects the broken connection,
  which drops kombu's transport client, then closes it; closing its channel tries to put the
  held messages back through that client, and a task that finishes later acknowledges
  through it: both raise AttributeError, which Celery does not expect there ("Unrecoverable
  error", the worker exits, nothing consumes any more). The client is given back.
- Celery reconnects through kombu's `ensure_connection` without intervals, so kombu's
  defaults apply: 2, 4, 6 ... up to 30 s between tries, and a worker sat idle up to 30 s after
  Redis came back. A try is one TCP connect: every 0.5-2 s costs the broker nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)

RECONNECT_INTERVALS = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}  # s


class Consumer(CeleryConsumer):
    def ensure_connected(self, conn: Any) -> Any:
        # Celery's own method decides whether to retry and logs each try; only kombu's
        # intervals change, for this call, on this connection object.
        conn.ensure_connection = functools.partial(conn.ensure_connection, **RECONNECT_INTERVALS)
        try:
            return super().ensure_connected(conn)
        finally:
            del conn.ensure_connection

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        transport = getattr(connection, "_transport", None)
        if connection is None or transport is None:
            return super().on_connection_error_after_connected(exc)
        # Celery calls this connection's close() once, after collect() dropped the client.
        connection.close = _closing_with_client(connection, transport, connection.close)
        super().on_connection_error_after_connected(exc)
        # Tasks still running finish later and acknowledge through the old channel: with the
        # client back that reaches Redis, or fails as the connection error kombu expects.
        transport.client = connection


def _closing_with_client(connection: Any, transport: Any, close: Callable[[], Any]) -> Callable[[], Any]:
    def wrapper() -> Any:
        # With its client back the channel puts the held messages back in the queue when Redis
        # answers, and fails with a connection error (ignored by Celery) when it does not.
        transport.client = connection
        try:
            return close()
        except AttributeError:
            # Some other path of kombu's without a client: the held messages stay in Redis
            # (the unacked hash, written when they were delivered) for the visibility timeout.
            logger.warning("broker connection closed without putting held tasks back; they are redelivered "
                           "after the visibility timeout", extra={"category": "celery_held_tasks_left"})
            return None

    return wrapper
