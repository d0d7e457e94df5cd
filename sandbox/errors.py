"""Stripe-shaped error answers made by the proxy itself (not by localstripe)."""

from __future__ import annotations

import json
from typing import Any

from sandbox.http11 import Response


def stripe_error(
    status: int,
    type_: str,
    message: str,
    *,
    code: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    **extra: Any,
) -> Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code is not None:
        error["code"] = code
    error.update(extra)
    body = json.dumps({"error": error}).encode()
    return Response(status, body, list(headers or []))


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())
