"""This process's pool statistics, collected for the health run and published for the fleet view."""

from __future__ import annotations

import os
import time
from typing import Any

from django.conf import settings
from django.db import connections

from config import queueing
from config.postgres.failures import db_failure_counts
from config.postgres.leaks import leaks as connection_leaks
from health import fleet

DB_COUNTERS = ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors", "usage_ms",
               "connections_num", "connections_errors", "connections_lost", "returns_bad")


HTTP_COUNTERS = ("acquisitions", "wait_ms_total", "pool_full", "requests", "errors", "connections_opened")


LOG_COUNTERS = ("sent", "dropped", "errors", "failed")


WEB_COUNTERS = ("requests", "queued", "wait_ms_total", "shed")


GATEWAY_LIMIT_COUNTERS = ("calls", "shed", "slow", "cuts")


# --- Pool statistics -----------------------------------------------------------------------
def pool_stats_collect() -> dict[str, Any]:
    """This process's pool figures (database, HTTP, log shipping): the document it publishes."""
    from config.http.pools import http_pool_stats
    from config.postgres.answers_pool import answers_pool_existing
    from payments.figures import figures_snapshot
    from payments.gateway import gateway_identity, gateway_limit_stats

    now = time.time()
    db = _db_pool_figures(_existing_pool())
    answers = _db_pool_figures(answers_pool_existing())  # the answers lane (config/postgres/answers_pool.py)
    failures = db_failure_counts()
    http = http_pool_stats()
    logs = _logging_stats()
    web = queueing.stats(fleet.delta_window())  # a gunicorn worker's threads
    limit = gateway_limit_stats()  # the gateway concurrency limit, once the client exists
    counters: dict[str, float] = {f"dbfail.{key}": value for key, value in failures.items()}
    if db is not None:
        counters.update({f"db.{key}": db[key] for key in DB_COUNTERS})
    if answers is not None:
        counters.update({f"dba.{key}": answers[key] for key in DB_COUNTERS})
    for pool in http:
        counters.update({f"http.{pool['client']}|{pool['host']}.{key}": pool[key] for key in HTTP_COUNTERS})
    if logs is not None:
        counters.update({f"log.{key}": logs.get(key) or 0 for key in LOG_COUNTERS})
    if web is not None:
        counters.update({f"web.{key}": web[key] for key in WEB_COUNTERS})
    if limit is not None:
        counters.update({f"gwl.{key}": limit[key] for key in GATEWAY_LIMIT_COUNTERS})
    recent = fleet.history.recent(now, counters, fleet.delta_window())

    def section(prefix: str) -> dict[str, float]:
        return {key[len(prefix):]: value for key, value in recent.items() if key.startswith(prefix)}

    if db is not None:
        db["recent"] = section("db.")
        db["leaks"] = connection_leaks()
    if answers is not None:
        answers["recent"] = section("dba.")
    for pool in http:
        pool["recent"] = section(f"http.{pool['client']}|{pool['host']}.")
    if logs is not None:
        logs["recent"] = section("log.")
    if web is not None:
        web["recent"] = section("web.")
    if limit is not None:
        limit["recent"] = section("gwl.")
    return {
        "process": fleet.process_id(),
        "host": settings.HOSTNAME,
        "pid": os.getpid(),
        "role": settings.PROCESS_ROLE,
        "at": now,
        "window_s": fleet.delta_window(),
        "db": db,
        "db_answers": answers,
        "db_failures": {"total": failures, "recent": section("dbfail.")},
        "http": http,
        "logging": logs,
        "web": web,
        # Totals since the process started; the health run takes differences between runs.
        "payments": figures_snapshot(),
        "gateway_limit": limit,
        "gateway": gateway_identity(),
    }


def pool_stats_publish() -> dict[str, Any]:
    """Collects this process's figures and publishes them to Redis for the fleet view."""
    doc = pool_stats_collect()
    fleet.write(doc)
    return doc


def _db_pool_figures(pool: Any) -> dict[str, Any] | None:
    if pool is None:
        return None
    # get_stats(), never pop_stats(): popping resets the counters for every other reader.
    stats = pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    figures: dict[str, Any] = {
        "name": pool.name,
        "open": not pool.closed,
        "min": stats.get("pool_min", 0),
        "max": stats.get("pool_max", 0),
        "size": size,
        "idle": idle,
        "in_use": max(0, size - idle),
        "waiting": stats.get("requests_waiting", 0),
    }
    figures.update({key: stats.get(key, 0) for key in DB_COUNTERS})
    return figures


def _existing_pool(alias: str = "default") -> Any:
    """This process's pool for `alias` if something already made it, else None.

    Never `connections[alias].pool`: that property creates the pool, binding it to the
    connection settings of that moment. A process that has not used the database yet has
    nothing to report, and a test run, which switches to its test database after start-up
    (a request at collection time starts this thread), would otherwise keep a pool on the
    development database for the whole session."""
    return getattr(type(connections[alias]), "_connection_pools", {}).get(alias)


def _logging_stats() -> dict[str, Any] | None:
    try:
        from config.logs.cloudwatch import handler_stats
    except ImportError:
        return None
    stats = handler_stats()
    return dict(stats) if stats is not None else None
