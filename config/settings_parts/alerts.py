"""Where alerts go: the webhook receivers verify, and what production insists on."""

from __future__ import annotations

from config.env import require


def alert_webhook_check(*, url: str, secret: str, debug: bool) -> None:
    """Refuses a weak ALERT_WEBHOOK_SECRET, and a production webhook without one."""
    require(
        not secret or len(secret) >= 32,
        "ALERT_WEBHOOK_SECRET must be at least 32 characters (a random value, e.g. openssl rand -hex 32)",
    )
    require(
        debug or not url or bool(secret),
        "ALERT_WEBHOOK_SECRET is required in production when ALERT_WEBHOOK_URL is set: receivers verify "
        "every alert webhook with it",
    )
