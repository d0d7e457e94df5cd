"""Turns database exhaustion or absence, anywhere in a request, into 503 + Retry-After."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.errors import service_unavailable
from config.postgres.failures import POOL_EXHAUSTED, classify_db_error, record_db_failure, retry_after_seconds


def db_failure_response(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    category = classify_db_error(exc)
    if category is None:
        return None
    record_db_failure(category, path=request.path)
    if category == POOL_EXHAUSTED:
        message = "All database connections are busy; try again shortly."
    else:
        message = "The database is unavailable; try again shortly."
    return service_unavailable(code=category, message=message, retry_after=retry_after_seconds())


class DatabaseUnavailableMiddleware:
    """Outermost middleware: views' errors arrive through process_exception; errors raised
    by other middleware (sessions, auth) reach `config.urls.handler500` instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return db_failure_response(request, exc)
