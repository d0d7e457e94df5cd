"""Pool drills: the database pool held until it is exhausted, the HTTP pool driven past its size."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection, connections

from health.console.drills.gateway import sandbox_stats
from health.console.drills.limits import MAX_CONCURRENCY, MAX_HOLD_MS, MAX_POOL, MAX_ROUNDS, Progress


# --- Database pool stress --------------------------------------------------------------------
def db_pool_stress(*, concurrency: int, pool_max: int, hold_ms: int, progress: Progress) -> dict[str, Any]:
    """`concurrency` queries at once, each holding a connection for `hold_ms`, against a pool of
    `pool_max`: the extra ones queue for a connection; none should fail. With `pool_max` equal
    to this process's own pool size the drill uses that very pool (what the health checks see);
    another size gets a pool of its own with the same connection settings."""
    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    pool_max = max(1, min(pool_max, MAX_POOL))
    hold = max(0.0, min(hold_ms, MAX_HOLD_MS)) / 1000
    own_pool = connection.pool  # type: ignore[attr-defined]  # Django 5.1's pool; not in django-stubs
    use_own = own_pool is not None and pool_max == own_pool.max_size
    before = own_pool.get_stats() if use_own else {}
    dedicated = None if use_own else _dedicated_pool(pool_max)
    # This thread's connection goes back first, so the drill competes for the whole pool.
    connection.close()
    barrier = threading.Barrier(concurrency)
    started = time.perf_counter()
    done = [0]
    lock = threading.Lock()

    def one(index: int) -> dict[str, Any]:
        barrier.wait(timeout=10)
        asked = time.perf_counter()
        got = finished = None
        error = ""
        try:
            if dedicated is not None:
                with dedicated.connection() as conn:
                    got = time.perf_counter()
                    conn.execute("SELECT pg_sleep(%s)", [hold])
                    finished = time.perf_counter()
            else:
                connection.ensure_connection()  # borrows from the process's pool, waiting if it is empty
                got = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(%s)", [hold])
                finished = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - a failure is what the drill reports
            error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        finally:
            connections.close_all()
        end = finished or time.perf_counter()
        with lock:
            done[0] += 1
            count = done[0]
        progress(count, concurrency, f"{count} of {concurrency} queries finished")
        return {"index": index, "asked_s": round(asked - started, 4), "got_s": round((got or end) - started, 4),
                "end_s": round(end - started, 4), "wait_ms": round(((got or end) - asked) * 1000, 1),
                "query_ms": round((end - (got or end)) * 1000, 1), "error": error}

    progress(0, concurrency, f"starting {concurrency} queries against a pool of {pool_max}")
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drill-db") as executor:
            queries = list(executor.map(one, range(concurrency)))
    finally:
        if dedicated is not None:
            dedicated.close()
    elapsed = time.perf_counter() - started
    after = own_pool.get_stats() if use_own else {}
    waits = [q["wait_ms"] for q in queries]
    # Queued = waited for another query's hold to end. A query that found no idle connection
    # also waits while the pool opens one (tens of ms, more on a busy host): half a hold
    # tells the two apart.
    queued = [q for q in queries if q["wait_ms"] > max(20.0, hold * 1000 * 0.5)]
    return {
        "pool": "this worker's own pool" if use_own else "a dedicated pool for the drill",
        "concurrency": concurrency, "pool_max": pool_max, "hold_ms": round(hold * 1000),
        "connection_timeout_s": settings.DB_CONNECTION_TIMEOUT,
        "elapsed_ms": round(elapsed * 1000, 1),
        "queued": len(queued), "failed": sum(1 for q in queries if q["error"]),
        "wait_ms": {"p50": round(statistics.median(waits), 1), "max": round(max(waits), 1),
                    "total": round(sum(waits), 1)},
        "pool_stats": {key: after.get(key, 0) - before.get(key, 0)
                       for key in ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors",
                                   "connections_num")} if use_own else None,
        "queries": queries,
    }


def _dedicated_pool(size: int) -> Any:
    from psycopg_pool import ConnectionPool

    params = connection.get_connection_params()
    params["autocommit"] = True
    pool = ConnectionPool(kwargs=params, min_size=0, max_size=size, timeout=settings.DB_CONNECTION_TIMEOUT,
                          name="payops-drill", open=False)
    pool.open(wait=False)
    return pool


# --- HTTP pool --------------------------------------------------------------------------------
def http_pool(*, concurrency: int, rounds: int, progress: Progress) -> dict[str, Any]:
    """`rounds` bursts of `concurrency` simultaneous gateway probes through the payment Session:
    the pool holds PAYMENT_POOL_MAXSIZE connections, so the rest wait, and later rounds reuse
    the connections the first one opened."""
    from payments.gateway import get_gateway
    from payments.gateway.errors import GatewayError

    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    rounds = max(1, min(rounds, MAX_ROUNDS))
    gateway = get_gateway()
    before = _payment_pool_figures()
    proxy_before = sandbox_stats(gateway.config.base_url)
    total = concurrency * rounds
    done = [0]
    lock = threading.Lock()
    requests_seen: list[dict[str, Any]] = []
    started = time.perf_counter()

    def one(index: int, round_no: int, barrier: threading.Barrier) -> dict[str, Any]:
        barrier.wait(timeout=10)
        asked = time.perf_counter()
        error = ""
        try:
            gateway.probe(timeout=3.0)
        except GatewayError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:200]
        end = time.perf_counter()
        with lock:
            done[0] += 1
            count = done[0]
        progress(count, total, f"round {round_no}: {count} of {total} requests answered")
        return {"round": round_no, "index": index, "asked_s": round(asked - started, 4),
                "end_s": round(end - started, 4), "latency_ms": round((end - asked) * 1000, 1), "error": error}

    progress(0, total, f"{rounds} rounds of {concurrency} concurrent requests")
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drill-http") as executor:
        for round_no in range(1, rounds + 1):
            barrier = threading.Barrier(concurrency)
            requests_seen.extend(executor.map(lambda i, r=round_no, b=barrier: one(i, r, b), range(concurrency)))
    elapsed = time.perf_counter() - started
    after = _payment_pool_figures()
    delta = {key: round(after.get(key, 0) - before.get(key, 0), 1)
             for key in ("acquisitions", "wait_ms_total", "pool_full", "requests", "errors", "connections_opened")}
    proxy_after = sandbox_stats(gateway.config.base_url)
    latencies = [r["latency_ms"] for r in requests_seen]
    return {
        "gateway": gateway.config.base_url, "concurrency": concurrency, "rounds": rounds,
        "pool_maxsize": settings.PAYMENT_POOL_MAXSIZE, "elapsed_ms": round(elapsed * 1000, 1),
        "failed": sum(1 for r in requests_seen if r["error"]),
        "latency_ms": {"p50": round(statistics.median(latencies), 1), "max": round(max(latencies), 1)},
        "pool": delta,
        "longest_wait_ms": after.get("max_wait_ms"),
        "connections_reused": int(delta["requests"] - delta["connections_opened"]),
        "proxy_connections_opened": (proxy_after["connections_opened"] - proxy_before["connections_opened"]
                                     if proxy_before and proxy_after else None),
        "requests": requests_seen,
    }


def _payment_pool_figures() -> dict[str, float]:
    from config.http.pools import http_pool_stats

    totals: dict[str, float] = {}
    for pool in http_pool_stats():
        if pool["client"] != "payment":
            continue
        for key, value in pool.items():
            if isinstance(value, (int, float)):
                totals[key] = max(totals.get(key, 0), value) if key == "max_wait_ms" else totals.get(key, 0) + value
    return totals
