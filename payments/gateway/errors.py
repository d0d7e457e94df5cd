"""Gateway failures, by what they mean for the payment."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every gateway failure; `outcome` names it in PaymentAttempt terms."""

    outcome = "bad_response"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GatewayUnavailable(GatewayError):
    """Nothing reached the gateway (refused connection, open breaker): safe to try again."""

    outcome = "connect_error"


class GatewayTimeout(GatewayError):
    outcome = "timeout"


class GatewayCredentialsRefused(GatewayError):
    """The gateway refuses our API key (401/403): nothing is charged until someone fixes it."""

    outcome = "auth_refused"
