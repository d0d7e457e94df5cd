"""The one error shape of the contract: {"error": {"type", "code", "message", "param"}}."""

from __future__ import annotations

from django.http import JsonResponse


def error_response(
    status: int,
    *,
    type: str,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"error": {"type": type, "code": code, "message": message, "param": param}}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def service_unavailable(*, code: str, message: str, retry_after: int) -> JsonResponse:
    return error_response(
        503,
        type="service_unavailable",
        code=code,
        message=message,
        headers={"Retry-After": str(max(1, int(retry_after)))},
    )
