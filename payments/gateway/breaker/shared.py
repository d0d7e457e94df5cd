"""The breaker shared by every process through Redis (see the package docstring for its rules)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from payments.gateway.breaker.link import ScriptLink
from payments.gateway.breaker.memory import LocalBreaker
from payments.gateway.breaker.policy import (
    OUTCOME_CODE,
    BreakerConfig,
    BreakerSnapshot,
    CircuitOpenError,
    Outcome,
    Permit,
    SharedStateUnavailable,
    bucketing,
)
from payments.gateway.breaker.reply import FREE_PERMIT, Heard, Reply, reply_text, transition_report

logger = logging.getLogger(__name__)


class CircuitBreaker:
    """A circuit breaker whose state every process shares through Redis (see module doc)."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        redis_factory: Callable[[], redis.Redis] | None,
        on_transition: Callable[[str, str, BreakerSnapshot], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._factory = redis_factory
        self._on_transition = on_transition
        self._clock = clock
        self._bucket_ms, _ = bucketing(config)
        self._interval = config.sync_interval
        self._local = LocalBreaker(config, clock)
        self._lock = threading.Lock()  # script loading, the Redis up/down flag
        self._sync_lock = threading.Lock()  # one periodic refresh at a time
        self._pending_lock = threading.Lock()  # the counts below and the heard state
        self._pending: dict[int, list[int]] = {}  # bucket (Redis time) -> [calls, failures]
        self._pending_calls = 0
        self._pending_failures = 0
        self._heard: Heard | None = None
        self._offset_ms = 0  # Redis time minus this breaker's clock, as last heard
        self._link = ScriptLink(config, redis_factory, clock=clock, lock=self._lock, on_down=self._forget_heard)
        self._token_prefix = uuid.uuid4().hex[:12]
        self._tokens = itertools.count()

    # -- public API -------------------------------------------------------------------

    def before_call(self) -> Permit:
        """A permit for one call, or ``CircuitOpenError`` (fail fast: make no call)."""
        heard = self._heard
        if heard is not None and heard.free and not self._link.down:
            age = self._clock() - heard.at
            if 0 <= age < self._interval:
                return FREE_PERMIT  # closed a moment ago: no round-trip
            if self._sync_lock.acquire(blocking=False):
                try:
                    if self._fresh():  # another thread has just refreshed it
                        return FREE_PERMIT
                    return self._acquire()
                finally:
                    self._sync_lock.release()
            if 0 <= age < 2 * self._interval:
                return FREE_PERMIT  # another thread is refreshing it right now
        return self._acquire()

    def record(self, permit: Permit, *, outcome: Outcome, duration: float) -> None:
        """Report how the permitted call went; ``duration`` in seconds."""
        code = OUTCOME_CODE.get(outcome)
        if code is None:
            raise ValueError("outcome must be 'success', 'failure' or 'ignored'")
        if code == "s" and duration > self.config.slow_call_seconds:
            code = "f"
        if not permit.shared or self._link.down:
            # A shared permit whose Redis has gone away since counts locally, as a plain call.
            transition_report(self._local.record(code, "" if permit.shared else permit.token), config=self.config,
                              shared=False, on_transition=self._on_transition)
            return
        if permit.probe:  # the probe's outcome decides for the fleet: at once
            reply = self._shared_call("record", code, permit.token)
            if reply is not None:
                transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)
            else:
                transition_report(self._local.record(code, ""), config=self.config, shared=False, on_transition=self._on_transition)
            return
        if code == "i":
            return
        failed = int(code == "f")
        now = self._clock()
        with self._pending_lock:
            bucket = (int(now * 1000) + self._offset_ms) // self._bucket_ms
            cell = self._pending.get(bucket)
            if cell is None:
                self._pending[bucket] = [1, failed]
            else:
                cell[0] += 1
                cell[1] += failed
            self._pending_calls += 1
            self._pending_failures += failed
            heard = self._heard
            due = heard is None or not 0 <= now - heard.at < self._interval
            # Near the threshold a failure goes out now, so that opening is not delayed.
            urgent = self._interval == 0 or (
                failed and heard is not None and not due and heard.free
                and self._would_open(heard)
            )
        if urgent:
            with self._sync_lock:
                if self._pending_calls:  # unless another thread has just sent them
                    self._sync()
        elif due and self._sync_lock.acquire(blocking=False):
            try:
                if not self._fresh():  # unless another thread has just refreshed it
                    self._sync()
            finally:
                self._sync_lock.release()

    def flush(self) -> None:
        """Send this process's pending outcomes now (and hear the shared state)."""
        with self._sync_lock:
            self._sync()

    def snapshot(self) -> BreakerSnapshot:
        """The state as this process sees it now (``shared`` False: its local fallback).

        Sends this process's pending outcomes first, so the window is the fleet's."""
        reply = self._shared_call("snapshot")
        if reply is None:
            return self._local.snapshot().snapshot(self.config.name, shared=False)
        transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)
        return reply.snapshot(self.config.name, shared=True)

    def force(self, *, state: str, reason: str, until: float | datetime, by: str) -> None:
        """Hold the circuit open or closed for the whole fleet until ``until`` (epoch s)."""
        if state not in ("open", "closed"):
            raise ValueError("state must be 'open' or 'closed'")
        if not reason or not by:
            raise ValueError("a forced state needs a reason and who forced it")
        until_s = until.timestamp() if isinstance(until, datetime) else float(until)
        if until_s <= time.time():  # epoch seconds, not a duration: 300 would be 1970
            raise ValueError("until must be a future epoch time")
        raw = self._link.eval("force", "", state, reason, by, int(until_s * 1000), urgent=True)
        if raw is None:
            raise SharedStateUnavailable(f"Redis unavailable: {self.config.name!r} not forced")
        if reply_text(raw[0]) == "until_in_past":
            raise ValueError("until is not in the future by the Redis server's clock")
        until_iso = datetime.fromtimestamp(until_s, tz=UTC).isoformat(timespec="seconds")
        logger.warning(
            "circuit %s forced %s by %s until %s: %s",
            self.config.name, state, by, until_iso, reason,
            extra={"category": "circuit_forced", "breaker": self.config.name, "state": state,
                   "reason": reason, "by": by, "until": until_s},
        )
        reply = Reply.parse(raw)
        self._hear(reply)
        transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)

    def clear_force(self, *, by: str) -> None:
        """End a forced state; the breaker's own state applies again."""
        reply = self._shared_call("clear", outcomes=False, urgent=True)
        if reply is None:
            raise SharedStateUnavailable(f"Redis unavailable: {self.config.name!r} unchanged")
        logger.warning(
            "circuit %s force cleared by %s", self.config.name, by,
            extra={"category": "circuit_force_cleared", "breaker": self.config.name, "by": by},
        )
        transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)

    def reset(self) -> None:
        """Back to closed with an empty window, shared and local; ends any forced state."""
        self._take_pending()  # forgotten, like the window they were meant for
        transition_report(self._local.reset(), config=self.config, shared=False, on_transition=self._on_transition)
        reply = self._shared_call("reset", outcomes=False, urgent=True)
        if reply is not None:
            transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)

    # -- the shared state: cached, batched ------------------------------------------------

    def _acquire(self) -> Permit:
        token = f"{self._token_prefix}:{next(self._tokens)}"
        reply = self._shared_call("acquire", token)
        shared = reply is not None
        if reply is None:
            reply = self._local.acquire(token)
        transition_report(reply, config=self.config, shared=shared, on_transition=self._on_transition)
        if reply.ok:
            return Permit(probe=reply.probe, shared=shared, token=token if reply.probe else "")
        reason = reply.deny
        if reply.forced is not None:
            reason = f"forced by {reply.forced['by']}: {reply.forced['reason']}"
        raise CircuitOpenError(reply.retry_ms / 1000, reply.state, reason, self.config.name)

    def _sync(self) -> None:
        """Send the pending outcomes and hear the state; report what they changed."""
        reply = self._shared_call("sync")
        if reply is not None:
            transition_report(reply, config=self.config, shared=True, on_transition=self._on_transition)

    def _fresh(self) -> bool:
        """Closed and not forced, as heard less than ``sync_interval`` ago."""
        heard = self._heard
        return (
            heard is not None and heard.free and not self._link.down
            and 0 <= self._clock() - heard.at < self._interval
        )

    def _would_open(self, heard: Heard) -> bool:
        """Would the window as last heard plus the unsent counts open it? Under the lock."""
        return self.config.opens(calls=max(heard.calls, 0) + self._pending_calls,
                                 failures=max(heard.failures, 0) + self._pending_failures)

    def _take_pending(self) -> tuple[str, int, int] | None:
        """The unsent outcomes, as the script's batch argument, and their totals; cleared."""
        with self._pending_lock:
            if not self._pending_calls:
                return None
            pending, self._pending = self._pending, {}
            calls, failures = self._pending_calls, self._pending_failures
            self._pending_calls = self._pending_failures = 0
        batch = ",".join(f"{bucket}:{c}:{f}" for bucket, (c, f) in pending.items())
        return batch, calls, failures

    def _shared_call(
        self, op: str, *args: Any, outcomes: bool = True, urgent: bool = False
    ) -> Reply | None:
        """One script call carrying the pending outcomes; None: use the local breaker."""
        if self._factory is None:
            return None  # no shared state at all (nothing is ever pending then)
        batch = self._take_pending() if outcomes else None
        raw = self._link.eval(op, batch[0] if batch else "", *args, urgent=urgent)
        if raw is None:
            # The outcomes meant for Redis count in this process's own breaker instead.
            for lost in (batch, self._take_pending()):
                if lost is not None:
                    transition_report(self._local.merge(lost[1], lost[2]), config=self.config, shared=False, on_transition=self._on_transition)
            return None
        reply = Reply.parse(raw)
        self._hear(reply)
        return reply

    def _hear(self, reply: Reply) -> None:
        at = self._clock()
        with self._pending_lock:
            if self._heard is not None and reply.now_ms < self._heard.now_ms:
                return  # a later answer is already in: keep it
            self._offset_ms = reply.now_ms - int(at * 1000)
            self._heard = Heard(
                free=reply.state == "closed" and reply.forced is None,
                calls=reply.calls, failures=reply.failures, at=at, now_ms=reply.now_ms,
            )

    # -- Redis and fallback -----------------------------------------------------------

    def _forget_heard(self) -> None:
        self._heard = None  # nothing heard from Redis may let a call pass while it is away
