"""Error handlers: JSON in the contract's shape, and 503 for database trouble anywhere."""

from __future__ import annotations

import sys

from django.db import DataError
from django.http import HttpRequest, HttpResponse

from config.errors import error_response
from config.postgres.middleware import db_failure_response


def server_error(request: HttpRequest) -> HttpResponse:
    # Called inside Django's exception handling, so the exception is still current.
    exc = sys.exc_info()[1]
    if exc is not None:
        response = db_failure_response(request, exc)
        if response is not None:
            return response
        if isinstance(exc, DataError):
            # Input the database cannot store (a NUL byte, an out-of-range number) that slipped
            # past validation is still the client's input, not our failure.
            return error_response(400, type="invalid_request_error", code="invalid_value",
                                  message="A value in the request cannot be stored.")
    return error_response(500, type="api_error", code="internal_error", message="An internal error occurred.")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(404, type="invalid_request_error", code="not_found",
                          message=f"No such resource: {request.path}")
