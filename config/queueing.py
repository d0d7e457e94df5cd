"""How long the request being served waited in gunicorn before a thread took it, and the
worker's threads as a pool: busy, waiting, waits.

A gthread worker accepts every connection but serves only `threads` requests at once; the
others wait in its executor queue, unseen by the database pool. A request that waited there
and then waits the pool's whole acquire timeout answers 503 far later than the timeout says
(1.5 s for a 1 s timeout on a busy worker; docs/reliability.md). The worker class in
config/gunicorn_worker.py stamps each request when it is queued; the pool's wait for that
request is what is left of the timeout (config/postgres/base.py), and the figures below are
published with the other pools (health/checks/web.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

MIN_POOL_WAIT = 0.01  # s: a request that already waited the whole timeout still takes a free connection
QUEUED_AFTER = 0.1  # s: a request that waited longer than this for a thread counts as queued

_local = threading.local()
_lock = threading.Lock()
_threads = 0  # the worker's threads; 0 outside a gunicorn worker
_busy = 0
_waiting = 0
_totals = {"requests": 0, "queued": 0, "wait_ms_total": 0.0, "shed": 0}
# (time.monotonic(), seconds) of the requests that waited more than QUEUED_AFTER: rare when
# all is well, and what the longest recent wait is read from.
_long_waits: deque[tuple[float, float]] = deque(maxlen=512)


def serving(threads: int) -> None:
    """Called once by a gunicorn worker as it starts."""
    global _threads
    _threads = threads


def enqueued() -> None:
    """A request is ready to read and waits for a thread (the worker's main thread)."""
    global _waiting
    with _lock:
        _waiting += 1


def picked_up(queued_for: float) -> None:
    """A worker thread took a queued connection after `queued_for` seconds."""
    global _waiting
    _local.queued_for = queued_for
    _local.arrived_at = time.monotonic() - queued_for
    with _lock:
        _waiting = max(0, _waiting - 1)
        if queued_for > QUEUED_AFTER:
            _long_waits.append((time.monotonic(), queued_for))


def picked_up_reserved(queued_for: float) -> None:
    """A thread of a reserved lane (probes, console) took a request: its wait counts for its
    own deadlines, not in the API lane's figures."""
    _local.queued_for = queued_for
    _local.arrived_at = time.monotonic() - queued_for


def request_started() -> None:
    global _busy
    waited = queued_for()
    with _lock:
        _busy += 1
        _totals["requests"] += 1
        _totals["wait_ms_total"] += waited * 1000
        if waited > QUEUED_AFTER:
            _totals["queued"] += 1


def shed() -> None:
    """The request was answered 503 unstarted: it waited too long for a thread."""
    with _lock:
        _totals["shed"] += 1


def request_finished() -> None:
    global _busy
    with _lock:
        _busy = max(0, _busy - 1)


def released() -> None:
    """The thread is done with the connection."""
    _local.queued_for = 0.0
    _local.arrived_at = None


def waiting() -> int:
    """Requests queued for a thread of the API lane right now."""
    return _waiting


def queued_for() -> float:
    """Seconds the current request waited for a thread (0 outside gunicorn)."""
    return getattr(_local, "queued_for", 0.0)


def arrived_at() -> float | None:
    """time.monotonic() when gunicorn queued the current request; None outside gunicorn.
    A request's deadline counts from here: its client has been waiting since."""
    return getattr(_local, "arrived_at", None)


def pool_wait(timeout: float) -> float:
    """The acquire timeout left for the current request."""
    return max(MIN_POOL_WAIT, timeout - queued_for())


def stats(window: float) -> dict[str, Any] | None:
    """This worker's threads for the published pool figures; None outside gunicorn. The
    totals only grow (the publisher turns them into recent differences); the longest wait
    is over the last `window` seconds."""
    if not _threads:
        return None
    since = time.monotonic() - window
    with _lock:
        figures = {"threads": _threads, "busy": _busy, "waiting": _waiting, **_totals}
        longest = max((waited for at, waited in _long_waits if at >= since), default=0.0)
    figures["wait_ms_total"] = round(figures["wait_ms_total"], 1)
    figures["max_wait_ms"] = round(longest * 1000, 1)
    return figures
