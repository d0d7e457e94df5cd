"""What a gateway call comes back as: each try (Attempt) and the whole call (GatewayResult),
with the outcome of a try that got no answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from config.http.pools import AttemptRecord
from payments.gateway import answers


@dataclass
class Attempt:
    started_at: datetime
    duration_ms: float
    outcome: str
    http_status: int | None
    request_id: str
    error: str


@dataclass
class GatewayResult:
    """What one logical call (with its retries) came to."""

    outcome: str  # a row of payments.gateway.answers.ANSWERS
    http_status: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    sent: bool = False  # a request reached the wire: the gateway may have acted on it
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def meaning(self) -> answers.Meaning:
        return answers.meaning(self.outcome)

    @property
    def uncertain(self) -> bool:
        """No usable answer to a request that may have arrived: ask again, never assume."""
        return self.sent and self.meaning.becomes is answers.Becomes.UNSETTLED


def attempt_outcome(record: AttemptRecord, method: str) -> str:
    if record.error is not None:
        if isinstance(record.error, ReadTimeoutError):
            return "timeout"
        if isinstance(record.error, (NewConnectionError, ConnectTimeoutError)):
            return "connect_error"
        return "bad_response"
    return answers.classify(record.status, method=method)


def attempt_of(record: AttemptRecord, method: str, outcome: str | None = None) -> Attempt:
    started = datetime.now(UTC).timestamp() - (time.perf_counter() - record.started)
    return Attempt(
        started_at=datetime.fromtimestamp(started, tz=UTC),
        duration_ms=round(record.duration * 1000, 3),
        outcome=outcome or attempt_outcome(record, method),
        http_status=record.status,
        request_id=record.request_id or "",
        error=record.error.__class__.__name__ if record.error is not None else "",
    )


def is_body_error(exc: BaseException) -> bool:
    return isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError))


def error_outcome(error: BaseException | None) -> str:
    if isinstance(error, (requests.exceptions.ConnectTimeout,)):
        return "connect_error"
    if isinstance(error, requests.exceptions.Timeout):
        return "timeout"
    return "connect_error"
