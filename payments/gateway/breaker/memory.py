"""The in-process breaker: the same rules on one process's own counts, used while Redis is away."""

from __future__ import annotations

import threading
from collections.abc import Callable

from payments.gateway.breaker.policy import BreakerConfig, bucketing
from payments.gateway.breaker.reply import Reply


class LocalBreaker:
    """The same rules in one process's memory, for while Redis is away. No forced state."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._bucket_ms, self._n_buckets = bucketing(config)
        self._open_ms = int(config.open_seconds * 1000)
        self._lease_ms = int(config.probe_lease_seconds * 1000)
        self._lock = threading.Lock()
        self._buckets: dict[int, list[int]] = {}  # bucket -> [calls, failures]
        self._state = "closed"
        self._opened_at = -1
        self._why = ""
        self._probe = ""
        self._probe_until = 0

    def _window(self, now: int) -> tuple[int, int]:
        cur = now // self._bucket_ms
        oldest = cur - self._n_buckets + 1
        for idx in [i for i in self._buckets if i < oldest]:
            del self._buckets[idx]
        counts = [c for i, c in self._buckets.items() if i <= cur]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def _set(self, state: str, now: int, why: str) -> None:
        self._state = state
        self._why = why
        if state == "open":
            self._opened_at = now
        elif state == "closed":
            self._opened_at = -1

    def _reply(
        self, now: int, old: str, reason: str, *, ok: bool = True, probe: bool = False,
        retry_ms: int = 0, calls: int | None = None, failures: int | None = None,
        deny: str = "",
    ) -> Reply:
        moved = old != self._state
        if calls is None and moved:
            calls, failures = self._window(now)
        return Reply(
            ok=ok, probe=probe, retry_ms=max(0, retry_ms), state=self._state,
            calls=-1 if calls is None else calls, failures=-1 if failures is None else failures,
            opened_at_ms=self._opened_at, t_old=old if moved else "",
            t_new=self._state if moved else "", t_reason=reason if moved else "",
            forced=None, now_ms=now, deny=deny,
        )

    def acquire(self, token: str) -> Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            old, reason = self._state, ""
            if self._state == "open":
                wait = self._opened_at + self._open_ms - now
                if wait > 0:
                    return self._reply(now, old, reason, ok=False, retry_ms=wait, deny=self._why)
                self._set("half_open", now, "open_timeout")
                reason = "open_timeout"
            if self._state == "half_open":
                if self._probe and now < self._probe_until:
                    return self._reply(
                        now, old, reason, ok=False, retry_ms=self._probe_until - now,
                        deny="probe_in_flight",
                    )
                self._probe, self._probe_until = token, now + self._lease_ms
                return self._reply(now, old, reason, probe=True)
            return self._reply(now, old, reason)

    def record(self, code: str, token: str) -> Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            old, reason = self._state, ""
            calls = failures = None
            if token:
                if token == self._probe and now < self._probe_until:
                    self._probe = ""
                    if self._state == "half_open" and code == "s":
                        self._buckets.clear()
                        self._set("closed", now, "probe_succeeded")
                        reason, calls, failures = "probe_succeeded", 0, 0
                    elif self._state == "half_open" and code == "f":
                        self._set("open", now, "probe_failed")
                        reason = "probe_failed"
            elif code != "i":
                calls, failures, reason = self._count(now, 1, int(code == "f"))
            return self._reply(
                now, old, reason, retry_ms=self._retry_ms(now), calls=calls, failures=failures
            )

    def merge(self, calls: int, failures: int) -> Reply:
        """Count outcomes meant for Redis that could not be sent (plain calls, not probes)."""
        with self._lock:
            now = int(self._clock() * 1000)
            old = self._state
            window_calls, window_failures, reason = self._count(now, calls, failures)
            return self._reply(
                now, old, reason, retry_ms=self._retry_ms(now), calls=window_calls,
                failures=window_failures,
            )

    def _count(self, now: int, calls: int, failures: int) -> tuple[int, int, str]:
        """Add outcomes to the current bucket; open on the rate. Under ``_lock``."""
        bucket = self._buckets.setdefault(now // self._bucket_ms, [0, 0])
        bucket[0] += calls
        bucket[1] += failures
        calls, failures = self._window(now)
        if self._state == "closed" and self._config.opens(calls=calls, failures=failures):
            self._set("open", now, "failure_rate")
            return calls, failures, "failure_rate"
        return calls, failures, ""

    def _retry_ms(self, now: int) -> int:
        if self._state == "open":
            return self._opened_at + self._open_ms - now
        if self._state == "half_open" and self._probe:
            return self._probe_until - now
        return 0

    def snapshot(self) -> Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            calls, failures = self._window(now)
            return self._reply(
                now, self._state, "", retry_ms=self._retry_ms(now), calls=calls, failures=failures
            )

    def reset(self) -> Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            old = self._state
            self._buckets.clear()
            self._probe = ""
            self._set("closed", now, "reset")
            return self._reply(now, old, "reset", calls=0, failures=0)
