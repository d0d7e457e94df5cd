"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import time

from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from psycopg_pool import PoolTimeout

from config.redis import get_redis

READY_DB_WAIT = 2.0  # s; a probe must answer well inside the balancer's own timeout


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The process answers; it touches no dependency, so a database outage never restarts it."""
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    started = time.perf_counter()
    pool = connections["default"].pool
    try:
        if pool is None:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
        else:
            pool.open()
            with pool.connection(timeout=READY_DB_WAIT) as conn:
                conn.execute("SELECT 1")
    except PoolTimeout:
        if pool is not None and pool.get_stats().get("pool_size", 0) >= pool.max_size:
            # Every connection is busy but the server answers: this process is serving.
            return {"status": "busy", "ok": True}
        return {"status": "down", "ok": False, "error": "pool could not reach the database"}
    except Exception as exc:
        return {"status": "down", "ok": False, "error": exc.__class__.__name__}
    return {"status": "ok", "ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _redis() -> dict:
    started = time.perf_counter()
    try:
        get_redis().ping()
    except Exception as exc:
        return {"status": "down", "ok": False, "error": exc.__class__.__name__}
    return {"status": "ok", "ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """Database and Redis reachable. The gateway is left out on purpose: its outage must
    never take the whole fleet out of the load balancer."""
    checks = {"database": _database(), "redis": _redis()}
    ok = all(check.pop("ok") for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)
