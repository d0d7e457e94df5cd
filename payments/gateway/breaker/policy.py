"""The breaker's rules and the types its callers see: configuration (with the one Python
"would this open?" rule), snapshots, permits, the errors, the Redis keys."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

Outcome = Literal["success", "failure", "ignored"]


KEY_PREFIX = "payops:breaker"


REDIS_RETRY_SECONDS = 2.0  # while Redis is away, try it again at most this often


STATE_TTL_SECONDS = 86_400  # an idle breaker's state is forgotten after a day


REDIS_TIMEOUT_SECONDS = 0.25  # connect and read timeout of the breaker's Redis client


TRANSITION_CATEGORY = {"open": "circuit_open", "closed": "circuit_closed", "half_open": "circuit_half_open"}


OUTCOME_CODE = {"success": "s", "failure": "f", "ignored": "i"}


NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class CircuitOpenError(Exception):
    """The circuit refuses the call: nothing was sent. Try again after ``retry_after`` s."""

    def __init__(self, retry_after: float, state: str, reason: str, breaker: str = "gateway"):
        super().__init__(retry_after, state, reason, breaker)  # positional, so it pickles
        self.retry_after = retry_after
        self.state = state
        self.reason = reason
        self.breaker = breaker

    def __str__(self) -> str:
        return (
            f"circuit {self.breaker!r} is {self.state} ({self.reason}); "
            f"retry after {self.retry_after:.1f} s"
        )


class SharedStateUnavailable(RuntimeError):
    """An operation that only makes sense fleet-wide (a forced override) could not reach Redis."""


@dataclass(frozen=True)
class BreakerConfig:
    name: str = "gateway"
    failure_rate_threshold: float = 0.5  # share of counted calls, 0 < x <= 1
    minimum_calls: int = 10  # counted calls in the window before the rate can open it
    window_seconds: int = 30
    slow_call_seconds: float = 8.0  # a success slower than this counts as a failure (the gateway client: its read timeout)
    open_seconds: float = 30.0  # fail fast this long before the half-open probe
    probe_lease_seconds: float = 15.0  # a probe not reported by then is forfeit
    sync_interval: float = 0.25  # s a closed state heard from Redis is trusted (0: never)

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= NAME_CHARS:
            raise ValueError("BreakerConfig.name must be non-empty [A-Za-z0-9_.-]")
        if not 0 < self.failure_rate_threshold <= 1:
            raise ValueError("BreakerConfig.failure_rate_threshold must be in (0, 1]")
        if self.minimum_calls < 1 or self.window_seconds < 1:
            raise ValueError("BreakerConfig.minimum_calls and window_seconds must be >= 1")
        if min(self.slow_call_seconds, self.open_seconds, self.probe_lease_seconds) <= 0:
            raise ValueError("BreakerConfig durations must be positive")
        if not 0 <= self.sync_interval <= 5:
            raise ValueError("BreakerConfig.sync_interval must be in [0, 5] seconds")

    def opens(self, *, calls: int, failures: int) -> bool:
        """The one rule of both Python breakers (the Lua script keeps its own atomic copy):
        enough calls in the window, and a share of failures at the threshold."""
        return calls >= self.minimum_calls and failures >= self.failure_rate_threshold * calls


@dataclass(frozen=True)
class BreakerSnapshot:
    name: str
    state: Literal["closed", "open", "half_open"]
    calls: int  # counted calls in the window (-1: not measured for this report)
    failures: int
    failure_rate: float
    opened_at: float | None  # epoch seconds the circuit last opened
    retry_after: float  # seconds until a call may be let through again (0: now)
    forced: dict[str, Any] | None  # {state, reason, by, until (epoch s)} while overridden
    shared: bool  # False when this process is on its local fallback


@dataclass(frozen=True)
class Permit:
    """Leave to make one gateway call; hand it back to ``record``."""

    probe: bool  # this call is the half-open probe: its outcome closes or reopens
    shared: bool  # issued by the Redis breaker (False: by the local fallback)
    token: str = field(default="", repr=False)


def breaker_redis_factory(
    url: str, *, timeout: float = REDIS_TIMEOUT_SECONDS
) -> Callable[[], redis.Redis]:
    """A factory for a client fit for the breaker: short timeouts and no retries."""

    def build() -> redis.Redis:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,  # s
            socket_timeout=timeout,  # s
            retry=Retry(NoBackoff(), 0),  # a retry would only stretch the stall
        )

    return build


def breaker_keys(name: str) -> list[str]:
    """The Redis keys of one breaker: state, window, probe lease, force (one hash slot)."""
    base = f"{KEY_PREFIX}:{{{name}}}"
    return [f"{base}:state", f"{base}:win", f"{base}:probe", f"{base}:force"]


def bucketing(config: BreakerConfig) -> tuple[int, int]:
    """Bucket width (ms) and count: 1 s buckets, wider ones past a minute, at most ~60."""
    bucket_ms = 1000 * max(1, math.ceil(config.window_seconds / 60))
    return bucket_ms, math.ceil(config.window_seconds * 1000 / bucket_ms)
