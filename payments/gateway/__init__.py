"""The payment gateway: one client per process, built from settings on first use."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from payments.gateway.breaker.policy import BreakerConfig, breaker_redis_factory
from payments.gateway.breaker.shared import CircuitBreaker
from payments.gateway.client import GatewayClient, GatewayConfig
from payments.gateway.limiter import ConcurrencyLimiter, LimiterConfig
from payments.gateway.results import GatewayResult

__all__ = ["GatewayClient", "GatewayResult", "breaker_listener_add", "gateway_identity", "gateway_limit_stats",
           "get_gateway", "reset_gateway"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_client: GatewayClient | None = None


Listener = Callable[..., None]  # (old=, new=, snapshot=) of one breaker transition
_listeners: list[Listener] = []


def breaker_listener_add(listener: Listener) -> None:
    """Tells `listener` of every transition of this process's gateway breaker (as pybreaker's
    listeners): the health app turns them into alerts without payments knowing of it."""
    if listener not in _listeners:
        _listeners.append(listener)


def _on_transition(old: str, new: str, snapshot: Any) -> None:
    # A listener's failure must never disturb the payment that tripped the breaker.
    for listener in list(_listeners):
        try:
            listener(old=old, new=new, snapshot=snapshot)
        except Exception:  # noqa: BLE001 - a listener must never disturb a payment
            logger.exception("breaker listener failed", extra={"category": "alert_error"})


def build_breaker(*, redis_url: str | None = None) -> CircuitBreaker:
    """This process's gateway breaker; `redis_url` names another fleet's Redis (a drill's)."""
    config = BreakerConfig(
        name="gateway",
        failure_rate_threshold=settings.BREAKER_FAILURE_RATE / 100,
        minimum_calls=settings.BREAKER_MINIMUM_CALLS,
        window_seconds=settings.BREAKER_WINDOW,
        # Only a success slower than the read timeout is a failure: a gateway that is slow but
        # answers is used at the rate it can take (the concurrency limit), never cut off.
        slow_call_seconds=settings.PAYMENT_TIMEOUT,
        open_seconds=settings.BREAKER_OPEN_SECONDS,
        probe_lease_seconds=settings.PAYMENT_DEADLINE,
    )
    return CircuitBreaker(config, redis_factory=breaker_redis_factory(redis_url or settings.REDIS_URL),
                          on_transition=_on_transition)


def build_limiter() -> ConcurrencyLimiter:
    return ConcurrencyLimiter(LimiterConfig(
        max_limit=settings.PAYMENT_CONCURRENCY_MAX,
        min_limit=settings.PAYMENT_CONCURRENCY_MIN,
        slow_call_seconds=settings.PAYMENT_SLOW_CALL,
    ))


def gateway_limit_stats() -> dict[str, Any] | None:
    """This process's gateway concurrency figures, or None before its first gateway call."""
    client = _client
    return client.limiter.stats() if client is not None and client.limiter is not None else None


def gateway_identity() -> dict[str, str]:
    """Which gateway account this process pays through, safe to publish: the address without
    credentials, and a fingerprint of address and API key (a one-way hash: never the key). The
    health run compares them across the fleet, since a process on another gateway or key charges
    cards where the others never look."""
    client = _client
    url, key = (client.config.base_url, client.config.api_key) if client is not None else (
        settings.PAYMENT_GATEWAY_URL, settings.PAYMENT_GATEWAY_API_KEY)
    parts = urlsplit(url)
    address = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    digest = hashlib.sha256(f"payops-gateway\0{url.rstrip('/')}\0{key}".encode()).hexdigest()
    return {"address": address, "fingerprint": digest[:16]}


def get_gateway() -> GatewayClient:
    """This process's gateway client (one Session, one pool, shared by all threads)."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = GatewayClient(
                    GatewayConfig(
                        base_url=settings.PAYMENT_GATEWAY_URL,
                        api_key=settings.PAYMENT_GATEWAY_API_KEY,
                        connect_timeout=settings.PAYMENT_CONNECT_TIMEOUT,
                        read_timeout=settings.PAYMENT_TIMEOUT,
                        retry_attempts=settings.PAYMENT_RETRY_ATTEMPTS,
                        retry_delay=settings.PAYMENT_RETRY_DELAY,
                        pool_maxsize=settings.PAYMENT_POOL_MAXSIZE,
                        deadline=settings.PAYMENT_DEADLINE,
                    ),
                    breaker=build_breaker(),
                    limiter=build_limiter(),
                )
    return _client


def reset_gateway() -> None:
    """Forget the client (tests that change gateway settings)."""
    global _client
    with _lock:
        if _client is not None:
            _client.session.close()
        _client = None
