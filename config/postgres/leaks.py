"""Connections lent out too long (HikariCP's leakDetectionThreshold): every pooled connection
this process lends is noted with where it was taken (the view or the Celery task), and one held
past DB_LEAK_THRESHOLD is reported with that place, so a leak is seen long before the pool runs
dry. Django's connections are per thread: a lend is held by the thread that took it until it
goes back (`DatabaseWrapper._close`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

UNNAMED = "?"


@dataclass
class _Lend:
    taken_at: float  # time.monotonic()
    taken_wall: float  # time.time(), for the report
    thread: int
    where: str
    reported: bool = False


_lends: dict[int, _Lend] = {}  # by id() of the psycopg connection
_lock = threading.Lock()
_holder = threading.local()


def holder_set(where: str) -> None:
    """What this thread works on now (a request's view, a task's name); lends it already holds
    without a name take this one (a request's first query comes before its view is known)."""
    _holder.where = where
    me = threading.get_ident()
    with _lock:
        for lend in _lends.values():
            if lend.thread == me and (lend.where == UNNAMED or lend.where.startswith("request ")):
                lend.where = where


def holder_clear() -> None:
    _holder.where = UNNAMED


def lent(conn: Any) -> None:
    with _lock:
        _lends[id(conn)] = _Lend(time.monotonic(), time.time(), threading.get_ident(),
                                 getattr(_holder, "where", UNNAMED))


def returned(conn: Any) -> None:
    with _lock:
        _lends.pop(id(conn), None)


def leaks(*, threshold: float | None = None) -> list[dict[str, Any]]:
    """Lends held longer than `threshold` s (DB_LEAK_THRESHOLD), longest first; each is logged
    once as a warning the first time it is seen."""
    limit = settings.DB_LEAK_THRESHOLD if threshold is None else threshold
    now = time.monotonic()
    with _lock:
        held = [lend for lend in _lends.values() if now - lend.taken_at > limit]
        fresh = [lend for lend in held if not lend.reported]
        for lend in fresh:
            lend.reported = True
    for lend in fresh:
        logger.warning("database connection held %.0f s (limit %.0f s) by %s", now - lend.taken_at, limit, lend.where,
                       extra={"category": "db_connection_leak", "where": lend.where,
                              "held_s": round(now - lend.taken_at, 1), "threshold_s": limit})
    return [{"where": lend.where, "held_s": round(now - lend.taken_at, 1), "since": lend.taken_wall}
            for lend in sorted(held, key=lambda lend: lend.taken_at)]


class ConnectionHolderMiddleware:
    """Names each request's lends after its view (the URL's name, else the view's dotted path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        holder_set(f"request {request.method} {request.path}")
        try:
            return self.get_response(request)
        finally:
            holder_clear()

    def process_view(self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any) -> None:
        match = request.resolver_match
        name = match.view_name if match is not None and match.url_name else \
            f"{getattr(view, '__module__', '?')}.{getattr(view, '__qualname__', getattr(view, '__name__', '?'))}"
        holder_set(f"view {name}")
        return None
