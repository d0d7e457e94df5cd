"""Limits on how the service talks to the payment gateway that hold only together."""

from __future__ import annotations

from config.env import require


def gateway_webhook_secret_check(*, secret: str) -> None:
    """Refuses a PAYMENT_GATEWAY_WEBHOOK_SECRET that cannot be the gateway's signing secret."""
    require(
        secret == "" or (len(secret) >= 16 and not any(c.isspace() for c in secret)),
        "PAYMENT_GATEWAY_WEBHOOK_SECRET must be the gateway's signing secret (whsec_..., at least 16 characters, "
        "no spaces), or unset to refuse gateway events",
    )


def gateway_concurrency_check(*, pool_maxsize: int, concurrency_min: int, concurrency_max: int,
                              gunicorn_threads: int) -> None:
    """Refuses a concurrency limit that would make a call over it wait instead of being refused at once."""
    require(
        concurrency_max <= pool_maxsize,
        "PAYMENT_CONCURRENCY_MAX must not exceed PAYMENT_POOL_MAXSIZE (a call over the pool waits for a "
        "connection instead of being refused at once)",
    )
    require(
        concurrency_min <= concurrency_max,
        "PAYMENT_CONCURRENCY_MIN must not exceed PAYMENT_CONCURRENCY_MAX",
    )
    require(
        gunicorn_threads > concurrency_max,
        "GUNICORN_THREADS must exceed PAYMENT_CONCURRENCY_MAX (payments over the gateway concurrency limit "
        "must find a thread to be refused on at once, not queue)",
    )
