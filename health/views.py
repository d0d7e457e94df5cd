"""Liveness and readiness for load balancers and orchestrators; the latest health run for ops."""

from __future__ import annotations

import hmac
import time

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from psycopg_pool import PoolTimeout

from config.errors import error_response
from config.shutdown import shutting_down
from health import selectors
from health.exposition import CONTENT_TYPE
from health.metrics import metrics_text
from health.services.switch import health_stale_alert

READY_DB_WAIT = 2.0  # s; a probe must answer well inside the balancer's own timeout


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The process answers; it touches no dependency, so a database outage never restarts it."""
    return JsonResponse({"status": "ok"})


def _database() -> dict:
    started = time.perf_counter()
    pool = connections["default"].pool  # type: ignore[attr-defined]  # Django 5.1's pool; not in django-stubs
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


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """This process can serve: the database answers and it is not shutting down. Neither
    Redis nor the gateway is asked: payments go on without Redis (rate limit and breaker fall
    back to this process), and an outage of either must never empty the load balancer; both
    show as degraded in /health/status instead."""
    if shutting_down():
        return JsonResponse({"status": "shutting_down", "checks": {}}, status=503)
    checks = {"database": _database()}
    ok = all(check.pop("ok") for check in checks.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503)


@never_cache
@require_GET
def status(request: HttpRequest) -> JsonResponse:
    """The latest run: overall status for anyone; components, open alerts and staleness for
    staff (session) or `Authorization: Bearer <HEALTH_STATUS_TOKEN>`. Reading stale data
    trips the dead-man's switch (a critical alert)."""
    authorization = request.headers.get("Authorization", "")
    if authorization and not _token_matches(authorization):
        return _invalid_token("/health/status")
    detail = bool(authorization) or _is_staff(request)
    body, staleness = selectors.health_status(detail=detail)
    if staleness.stale:
        health_stale_alert(staleness=staleness)
    return JsonResponse(body)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The fleet's pools, payment figures, component states and open alerts in Prometheus'
    text format, for staff or the /health/status token. Reads what the processes published
    and the latest run, never the payments themselves."""
    authorization = request.headers.get("Authorization", "")
    if authorization:
        if not _token_matches(authorization):
            return _invalid_token("/metrics")
    elif not _is_staff(request):
        authenticated = bool(getattr(request, "user", None) and request.user.is_authenticated)
        if authenticated:
            return error_response(403, type="permission_error", code="staff_only",
                                  message="Metrics are for staff or the health token.")
        return error_response(401, type="authentication_error", code="not_authenticated",
                              message="Send Authorization: Bearer <HEALTH_STATUS_TOKEN> or sign in as staff.",
                              headers={"WWW-Authenticate": "Bearer"})
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)


def _is_staff(request: HttpRequest) -> bool:
    return bool(getattr(request, "user", None) and request.user.is_active and request.user.is_staff)


def _invalid_token(path: str) -> JsonResponse:
    return error_response(401, type="authentication_error", code="invalid_token",
                          message=f"The bearer token is not valid for {path}.")


def _token_matches(authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    expected = settings.HEALTH_STATUS_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), expected)
