"""The shared breaker's line to Redis: the script, its per-breaker arguments, and whether Redis
answers. While it does not, each call is refused the round trip except one try every
REDIS_RETRY_SECONDS, so a dead Redis costs payments one short timeout, not one per call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from payments.gateway.breaker.policy import (
    REDIS_RETRY_SECONDS,
    STATE_TTL_SECONDS,
    BreakerConfig,
    breaker_keys,
    bucketing,
)
from payments.gateway.breaker.script import BREAKER_LUA

logger = logging.getLogger(__name__)


class ScriptLink:
    def __init__(self, config: BreakerConfig, factory: Callable[[], redis.Redis] | None, *,
                 clock: Callable[[], float], lock: threading.Lock, on_down: Callable[[], None]) -> None:
        self.config = config
        self.down = False  # Redis failed and has not answered since
        self._factory = factory
        self._clock = clock
        self._lock = lock  # the breaker's: script loading and the up/down flag
        self._on_down = on_down
        self._keys = breaker_keys(config.name)
        bucket_ms, n_buckets = bucketing(config)
        # Sent with every script call as one argument (cheap to pack).
        self._conf = " ".join(str(v) for v in (
            repr(float(config.failure_rate_threshold)),
            config.minimum_calls,
            bucket_ms,
            n_buckets,
            int(config.open_seconds * 1000),
            max(1, int(config.probe_lease_seconds * 1000)),
            STATE_TTL_SECONDS * 1000,
        ))
        self._script: Any = None
        self._next_attempt = 0.0

    def eval(self, op: str, *args: Any, urgent: bool = False) -> list[Any] | None:
        """Run one op of the script (args: outcomes batch, then the op's); None: Redis away."""
        if self._factory is None:
            return None
        if self.down and not urgent:
            with self._lock:
                now = self._clock()
                if now < self._next_attempt:
                    return None
                self._next_attempt = now + REDIS_RETRY_SECONDS  # this caller tries; others wait
        try:
            if self._script is None:
                with self._lock:
                    if self._script is None:
                        self._script = self._factory().register_script(BREAKER_LUA)
            raw = self._script(keys=self._keys, args=(op, self._conf, *args))
        except redis.RedisError as exc:
            # Also READONLY, OOM, BUSY...: whatever Redis says, payments must go on.
            self.mark_down(exc)
            return None
        if self.down:
            self.mark_up()
        return raw


    def mark_down(self, exc: Exception) -> None:
        with self._lock:
            self._on_down()  # nothing heard from Redis may let a call pass now
            if self.down:
                return
            self.down = True
            self._next_attempt = self._clock() + REDIS_RETRY_SECONDS
        logger.warning(
            "circuit %s: Redis unavailable (%s), using this process's own breaker",
            self.config.name, type(exc).__name__,
            extra={"category": "circuit_fallback", "breaker": self.config.name,
                   "error": type(exc).__name__},
        )

    def mark_up(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
        logger.warning(
            "circuit %s: Redis is back, breaker state shared again", self.config.name,
            extra={"category": "circuit_shared_restored", "breaker": self.config.name},
        )
