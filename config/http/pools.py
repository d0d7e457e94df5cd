"""urllib3 connection pools that count what ops need to see, per host.

requests' HTTPAdapter hides its pools; these subclasses record acquisitions, waits, pool-full
refusals, connections opened, requests and errors, and a per-thread attempt log that lets
the gateway client record every try urllib3 makes on its own.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import EmptyPoolError


@dataclass
class PoolCounters:
    acquisitions: int = 0
    waiting: int = 0
    wait_seconds: float = 0.0
    max_wait_seconds: float = 0.0
    pool_full: int = 0
    requests: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class AttemptRecord:
    """One request on the wire, as urllib3 made it (retries included)."""

    started: float
    duration: float
    status: int | None
    error: BaseException | None
    request_id: str | None
    sent: bool  # the request bytes left this process: the gateway may have acted on it
    should_retry: str | None = None  # the gateway's Stripe-Should-Retry hint, as sent




_attempts = threading.local()


def start_attempt_log() -> list[AttemptRecord]:
    """Collect this thread's attempts until `stop_attempt_log()`."""
    _attempts.log = []
    return _attempts.log


def stop_attempt_log() -> None:
    _attempts.log = None


def last_attempt() -> AttemptRecord | None:
    """This thread's latest try of the call in progress (the retry policy reads its hint)."""
    log: list[AttemptRecord] | None = getattr(_attempts, "log", None)
    return log[-1] if log else None


class _InstrumentedMixin:
    counters: PoolCounters
    # requests never passes pool_timeout, so with block=True a thread would wait forever
    # for a free connection; this bounds the wait (EmptyPoolError once it runs out).
    pool_wait: float = 5.0

    def urlopen(self, method, url, *args: Any, **kwargs: Any):
        if kwargs.get("pool_timeout") is None:
            kwargs["pool_timeout"] = self.pool_wait
        return super().urlopen(method, url, *args, **kwargs)  # type: ignore[misc]  # the mixin's base is the pool class, unknown to mypy

    def _get_conn(self, timeout: float | None = None):
        counters = self.counters
        with counters.lock:
            counters.waiting += 1
        started = time.perf_counter()
        try:
            return super()._get_conn(timeout)  # type: ignore[misc]  # the mixin's base is the pool class, unknown to mypy
        except EmptyPoolError:
            with counters.lock:
                counters.pool_full += 1
            raise
        finally:
            waited = time.perf_counter() - started
            with counters.lock:
                counters.waiting -= 1
                counters.acquisitions += 1
                counters.wait_seconds += waited
                counters.max_wait_seconds = max(counters.max_wait_seconds, waited)

    def _make_request(self, conn, method, url, *args: Any, **kwargs: Any):
        log: list[AttemptRecord] | None = getattr(_attempts, "log", None)
        started = time.perf_counter()
        with self.counters.lock:
            self.counters.requests += 1
        try:
            response = super()._make_request(conn, method, url, *args, **kwargs)  # type: ignore[misc]  # mixin base
        except BaseException as exc:
            with self.counters.lock:
                self.counters.errors += 1
            if log is not None:
                log.append(
                    AttemptRecord(started, time.perf_counter() - started, None, exc, None, _was_sent(conn, exc))
                )
            raise
        if log is not None:
            log.append(
                AttemptRecord(
                    started, time.perf_counter() - started, response.status, None,
                    response.headers.get("Request-Id"), True, response.headers.get("Stripe-Should-Retry"),
                )
            )
        return response


def _was_sent(conn: Any, exc: BaseException) -> bool:
    """False only when no connection was ever established, so nothing could have arrived."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, (NewConnectionError, ConnectTimeoutError)):
        return False
    return True


class InstrumentedHTTPConnectionPool(_InstrumentedMixin, HTTPConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = PoolCounters()


class InstrumentedHTTPSConnectionPool(_InstrumentedMixin, HTTPSConnectionPool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = PoolCounters()


_adapters: weakref.WeakValueDictionary[str, InstrumentedAdapter] = weakref.WeakValueDictionary()


class InstrumentedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools report their figures under `client_name`."""

    def __init__(self, client_name: str, *, pool_wait: float = 5.0, **kwargs: Any) -> None:
        self.client_name = client_name
        self.pool_wait = pool_wait
        super().__init__(**kwargs)
        _adapters[client_name] = self

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        extra = {"pool_wait": self.pool_wait}
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PooledHTTP", (InstrumentedHTTPConnectionPool,), extra),
            "https": type("PooledHTTPS", (InstrumentedHTTPSConnectionPool,), extra),
        }

    def pool_stats(self) -> list[dict[str, Any]]:
        stats = []
        pools = self.poolmanager.pools
        with pools.lock:
            live = list(pools._container.values())
        for pool in live:
            stats.append(_pool_figures(self.client_name, pool))
        return stats


def _pool_figures(client: str, pool: HTTPConnectionPool) -> dict[str, Any]:
    counters: PoolCounters = pool.counters  # type: ignore[attr-defined]  # set on our pool classes only
    queue = pool.pool
    slots = list(queue.queue) if queue is not None else []
    idle = sum(1 for conn in slots if conn is not None)
    in_use = queue.maxsize - len(slots) if queue is not None else 0
    with counters.lock:
        return {
            "client": client,
            "host": f"{pool.scheme}://{pool.host}:{pool.port}",
            "max": queue.maxsize if queue is not None else 0,
            "in_use": max(0, in_use),
            "idle": idle,
            "waiting": counters.waiting,
            "acquisitions": counters.acquisitions,
            "wait_ms_total": round(counters.wait_seconds * 1000, 3),
            "max_wait_ms": round(counters.max_wait_seconds * 1000, 3),
            "pool_full": counters.pool_full,
            "connections_opened": pool.num_connections,
            "requests": counters.requests,
            "errors": counters.errors,
        }


def http_pool_stats() -> list[dict[str, Any]]:
    """Figures of every instrumented pool in this process, one dict per (client, host)."""
    stats: list[dict[str, Any]] = []
    for adapter in list(_adapters.values()):
        stats.extend(adapter.pool_stats())
    return stats
