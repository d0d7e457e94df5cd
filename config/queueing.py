"""How long the request being served waited in gunicorn before a thread took it.

A gthread worker accepts every connection but serves only `threads` requests at once; the
others wait in its executor queue, unseen by the database pool. A request that waited there
and then waits the pool's whole acquire timeout answers 503 far later than the timeout says
(measured: 1.5 s for a 1 s timeout, docs/reliability.md drill 2). The worker class in
config/gunicorn_worker.py stamps each request when it is queued; the pool's wait for that
request is what is left of the timeout (config/postgres/base.py).
"""

from __future__ import annotations

import threading

_local = threading.local()

MIN_POOL_WAIT = 0.01  # s: a request that already waited the whole timeout still takes a free connection


def started(queued_for: float) -> None:
    """Called by the worker thread that takes a request, with the seconds it waited."""
    _local.queued_for = queued_for


def finished() -> None:
    _local.queued_for = 0.0


def queued_for() -> float:
    """Seconds the current request waited for a thread (0 outside gunicorn)."""
    return getattr(_local, "queued_for", 0.0)


def pool_wait(timeout: float) -> float:
    """The acquire timeout left for the current request."""
    return max(MIN_POOL_WAIT, timeout - queued_for())
