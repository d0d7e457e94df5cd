"""How many gateway calls one process may have in flight, the excess refused at once.

A slow gateway holds a thread for every call in flight; without a cap, a burst of slow calls
takes every thread of the web worker and everything else (probes, the console) waits behind
them. Calls over the limit are refused before anything is sent: the payment stays pending
and the client retries with its key.

The limit adapts to the gateway's latency by AIMD (as TCP, and Netflix's concurrency-limits
``AIMDLimit``): a success slower than ``slow_call_seconds``, a timeout or a 429 cuts it by
``backoff``, at most once per round of calls (only a call sent after the last cut may cut
again, so that the many slow calls of one round cut once); each normal success while the
limit is in use grows it by ``1 / limit``, about one call per round, back up to ``max_limit``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Signal = Literal["fast", "slow", "overload", "ignored"]


@dataclass(frozen=True)
class LimiterConfig:
    max_limit: int = 10  # calls in flight at most; never above the connection pool's size
    min_limit: int = 2  # the floor a slow gateway brings it down to
    slow_call_seconds: float = 8.0  # a success slower than this lowers the limit
    backoff: float = 0.75  # the limit's factor on a slow call, a timeout or a 429

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError("LimiterConfig needs 1 <= min_limit <= max_limit")
        if self.slow_call_seconds <= 0 or not 0 < self.backoff < 1:
            raise ValueError("LimiterConfig.slow_call_seconds > 0 and 0 < backoff < 1")


@dataclass(frozen=True)
class Slot:
    """Leave for one call; hand it back to ``release``."""

    started: float  # the limiter's clock when the call was admitted


class ConcurrencyLimiter:
    """A per-process cap on calls in flight, adapted to the latency they meet (module doc)."""

    def __init__(self, config: LimiterConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = float(config.max_limit)
        self._in_flight = 0
        self._last_cut = -math.inf
        self._latency = 0.0  # s, moving average of admitted calls (what a retry waits for a slot)
        # Totals that only grow; the publisher turns them into recent differences.
        self._totals = {"calls": 0, "shed": 0, "slow": 0, "cuts": 0}

    @property
    def limit(self) -> int:
        return int(self._limit)

    def try_acquire(self) -> Slot | None:
        """A slot for one call, or None when the limit is reached (send nothing)."""
        with self._lock:
            if self._in_flight >= int(self._limit):
                self._totals["shed"] += 1
                return None
            self._in_flight += 1
            self._totals["calls"] += 1
            return Slot(started=self._clock())

    def release(self, slot: Slot, *, signal: Signal) -> None:
        """The call is over; ``signal`` says what its latency or answer tells of the gateway."""
        now = self._clock()
        duration = now - slot.started
        if signal == "fast" and duration > self.config.slow_call_seconds:
            signal = "slow"
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if signal != "ignored":
                self._latency = duration if not self._latency else 0.8 * self._latency + 0.2 * duration
            if signal == "slow":
                self._totals["slow"] += 1
            if signal in ("slow", "overload"):
                if slot.started >= self._last_cut:
                    self._limit = max(float(self.config.min_limit), self._limit * self.config.backoff)
                    self._last_cut = now
                    self._totals["cuts"] += 1
            elif signal == "fast" and (self._in_flight + 1) * 2 >= self._limit:
                # Grow only while the limit is in use: an idle process learns nothing about it.
                self._limit = min(float(self.config.max_limit), self._limit + 1 / self._limit)

    def reset(self) -> None:
        """Back to the maximum with no history (calls in flight stay counted)."""
        with self._lock:
            self._limit = float(self.config.max_limit)
            self._last_cut = -math.inf
            self._latency = 0.0

    def retry_after(self) -> float:
        """s a refused caller should wait: about one call's latency, at least 1 s."""
        return max(1.0, min(30.0, self._latency))

    def stats(self) -> dict[str, Any]:
        """The figures published with the pools."""
        with self._lock:
            return {
                "limit": int(self._limit), "max": self.config.max_limit, "min": self.config.min_limit,
                "in_flight": self._in_flight, "latency_ms": round(self._latency * 1000, 1),
                "slow_call_ms": round(self.config.slow_call_seconds * 1000), **self._totals,
            }


def signal_for(outcome: str) -> Signal:
    """What a call's outcome says about the gateway's load (its latency is judged apart)."""
    if outcome in ("timeout", "rate_limited"):
        return "overload"
    if outcome in ("ok", "declined", "not_found", "invalid_request", "idempotency_mismatch"):
        return "fast"
    return "ignored"
