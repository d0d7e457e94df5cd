"""Circuit breaker for the payment gateway, its state shared by every process through Redis.

Rules: the circuit opens when, over a sliding window of ``window_seconds``, at least
``minimum_calls`` calls were made and the share of failures reaches
``failure_rate_threshold``; a success slower than ``slow_call_seconds`` counts as a failure
(the gateway client sets it at its read timeout: a slow gateway that answers is throttled by
the concurrency limit, ``limiter.py``, not cut off),
an ``ignored`` outcome (a card decline, any other 4xx) does not count at all. An open
circuit fails fast with ``CircuitOpenError`` for ``open_seconds``; then one caller in the
whole fleet gets the half-open probe, under a lease of ``probe_lease_seconds`` so that a
prober that dies does not wedge the circuit. The probe's success closes the circuit with an
empty window; its failure opens it again.

The state machine runs inside one Lua script (``breaker_lua.py``, EVALSHA through
``register_script``), so that every check-and-change is atomic across processes and reports
each transition to exactly one caller, which logs it and calls ``on_transition``. The script
reads Redis server time; the ``clock`` given to the breaker drives only the in-process
timers (the fallback breaker, the refresh of the cached state, trying Redis again).

A closed circuit costs no round-trip per call. Each process keeps the shared state it last
heard for ``sync_interval`` (0.25 s): while that was "closed, not forced", ``before_call``
answers from memory, and ``record`` counts outcomes locally (calls and failures per window
bucket, in Redis time). One EVALSHA sends the counts and refreshes the state at most every
``sync_interval`` per process, made by whichever calling thread finds it due while the
others carry on (no background thread); at once when a failure would bring the known rate
(the window last heard plus the counts not yet sent) to the threshold with the minimum
calls met. Anything else goes to Redis on every call, as the fleet-wide rules need it: an
open or half-open circuit (the single probe is taken in Redis), a forced state, a probe's
outcome, ``snapshot`` (which sends the pending counts first), force, clear and reset. So an
opened or forced circuit is seen by every busy process within ``sync_interval`` (plus the
round-trip of a refresh already in flight, at most another ``sync_interval``), and a rate
crossed by several processes' outcomes opens the circuit within about ``sync_interval``.
Outcomes of a process that stops calling are sent with its next call or snapshot.
``sync_interval=0`` goes to Redis on every call and every outcome, as before.

When Redis cannot be reached, each process falls back to its own in-memory breaker with the
same rules, says so once, tries Redis again at most every ``REDIS_RETRY_SECONDS``, and says
so again when Redis answers. Give the breaker a client with short timeouts and no retries
(``breaker_redis_factory``) so that a dead Redis costs a payment at most one short timeout.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from payments.gateway.breaker_lua import BREAKER_LUA

logger = logging.getLogger(__name__)

Outcome = Literal["success", "failure", "ignored"]

KEY_PREFIX = "payops:breaker"
REDIS_RETRY_SECONDS = 2.0  # while Redis is away, try it again at most this often
STATE_TTL_SECONDS = 86_400  # an idle breaker's state is forgotten after a day
REDIS_TIMEOUT_SECONDS = 0.25  # connect and read timeout of the breaker's Redis client

_CATEGORY = {"open": "circuit_open", "closed": "circuit_closed", "half_open": "circuit_half_open"}
_OUTCOME_CODE = {"success": "s", "failure": "f", "ignored": "i"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


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
        if not self.name or not set(self.name) <= _NAME_CHARS:
            raise ValueError("BreakerConfig.name must be non-empty [A-Za-z0-9_.-]")
        if not 0 < self.failure_rate_threshold <= 1:
            raise ValueError("BreakerConfig.failure_rate_threshold must be in (0, 1]")
        if self.minimum_calls < 1 or self.window_seconds < 1:
            raise ValueError("BreakerConfig.minimum_calls and window_seconds must be >= 1")
        if min(self.slow_call_seconds, self.open_seconds, self.probe_lease_seconds) <= 0:
            raise ValueError("BreakerConfig durations must be positive")
        if not 0 <= self.sync_interval <= 5:
            raise ValueError("BreakerConfig.sync_interval must be in [0, 5] seconds")


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


def _bucketing(config: BreakerConfig) -> tuple[int, int]:
    """Bucket width (ms) and count: 1 s buckets, wider ones past a minute, at most ~60."""
    bucket_ms = 1000 * max(1, math.ceil(config.window_seconds / 60))
    return bucket_ms, math.ceil(config.window_seconds * 1000 / bucket_ms)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Reply:
    """One answer of the script (or of the local breaker), in the script's array order."""

    ok: bool
    probe: bool
    retry_ms: int
    state: str
    calls: int
    failures: int
    opened_at_ms: int
    t_old: str
    t_new: str
    t_reason: str
    forced: dict[str, Any] | None
    now_ms: int
    deny: str

    @classmethod
    def parse(cls, raw: list[Any]) -> _Reply:
        if len(raw) == 3:  # the short form: allowed, closed, not forced, nothing changed
            return cls(
                ok=True, probe=False, retry_ms=0, state="closed", calls=int(raw[0]),
                failures=int(raw[1]), opened_at_ms=-1, t_old="", t_new="", t_reason="",
                forced=None, now_ms=int(raw[2]), deny="",
            )
        f_state, f_reason, f_by, f_until = (_text(v) for v in raw[10:14])
        return cls(
            ok=bool(raw[0]),
            probe=bool(raw[1]),
            retry_ms=int(raw[2]),
            state=_text(raw[3]),
            calls=int(raw[4]),
            failures=int(raw[5]),
            opened_at_ms=int(raw[6]),
            t_old=_text(raw[7]),
            t_new=_text(raw[8]),
            t_reason=_text(raw[9]),
            forced=(
                {"state": f_state, "reason": f_reason, "by": f_by, "until": int(f_until) / 1000}
                if f_state
                else None
            ),
            now_ms=int(raw[14]),
            deny=_text(raw[15]),
        )

    def snapshot(self, name: str, *, shared: bool) -> BreakerSnapshot:
        rate = self.failures / self.calls if self.calls > 0 else 0.0
        return BreakerSnapshot(
            name=name,
            state=self.state,  # type: ignore[arg-type]
            calls=self.calls,
            failures=self.failures,
            failure_rate=rate,
            opened_at=self.opened_at_ms / 1000 if self.opened_at_ms >= 0 else None,
            retry_after=self.retry_ms / 1000,
            forced=self.forced,
            shared=shared,
        )


class _LocalBreaker:
    """The same rules in one process's memory, for while Redis is away. No forced state."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._bucket_ms, self._n_buckets = _bucketing(config)
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
    ) -> _Reply:
        moved = old != self._state
        if calls is None and moved:
            calls, failures = self._window(now)
        return _Reply(
            ok=ok, probe=probe, retry_ms=max(0, retry_ms), state=self._state,
            calls=-1 if calls is None else calls, failures=-1 if failures is None else failures,
            opened_at_ms=self._opened_at, t_old=old if moved else "",
            t_new=self._state if moved else "", t_reason=reason if moved else "",
            forced=None, now_ms=now, deny=deny,
        )

    def acquire(self, token: str) -> _Reply:
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

    def record(self, code: str, token: str) -> _Reply:
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

    def merge(self, calls: int, failures: int) -> _Reply:
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
        threshold = self._config.failure_rate_threshold
        if (
            self._state == "closed"
            and calls >= self._config.minimum_calls
            and failures >= threshold * calls
        ):
            self._set("open", now, "failure_rate")
            return calls, failures, "failure_rate"
        return calls, failures, ""

    def _retry_ms(self, now: int) -> int:
        if self._state == "open":
            return self._opened_at + self._open_ms - now
        if self._state == "half_open" and self._probe:
            return self._probe_until - now
        return 0

    def snapshot(self) -> _Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            calls, failures = self._window(now)
            return self._reply(
                now, self._state, "", retry_ms=self._retry_ms(now), calls=calls, failures=failures
            )

    def reset(self) -> _Reply:
        with self._lock:
            now = int(self._clock() * 1000)
            old = self._state
            self._buckets.clear()
            self._probe = ""
            self._set("closed", now, "reset")
            return self._reply(now, old, "reset", calls=0, failures=0)


@dataclass(frozen=True)
class _Heard:
    """The shared state as this process last heard it from Redis."""

    free: bool  # closed and not forced: a call may pass on this alone while it is fresh
    calls: int  # the shared window then (-1: not measured)
    failures: int
    at: float  # the breaker's clock when heard
    now_ms: int  # Redis time of that answer, so that an older answer never wins


_FREE_PERMIT = Permit(probe=False, shared=True)


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
        self._keys = breaker_keys(config.name)
        self._bucket_ms, n_buckets = _bucketing(config)
        # Sent with every script call as one argument (cheap to pack).
        self._conf = " ".join(str(v) for v in (
            repr(float(config.failure_rate_threshold)),
            config.minimum_calls,
            self._bucket_ms,
            n_buckets,
            int(config.open_seconds * 1000),
            max(1, int(config.probe_lease_seconds * 1000)),
            STATE_TTL_SECONDS * 1000,
        ))
        self._interval = config.sync_interval
        self._local = _LocalBreaker(config, clock)
        self._lock = threading.Lock()  # script loading, the Redis up/down flag
        self._sync_lock = threading.Lock()  # one periodic refresh at a time
        self._pending_lock = threading.Lock()  # the counts below and the heard state
        self._pending: dict[int, list[int]] = {}  # bucket (Redis time) -> [calls, failures]
        self._pending_calls = 0
        self._pending_failures = 0
        self._heard: _Heard | None = None
        self._offset_ms = 0  # Redis time minus this breaker's clock, as last heard
        self._script: Any = None
        self._down = False  # Redis failed and has not answered since
        self._next_attempt = 0.0
        self._token_prefix = uuid.uuid4().hex[:12]
        self._tokens = itertools.count()

    # -- public API -------------------------------------------------------------------

    def before_call(self) -> Permit:
        """A permit for one call, or ``CircuitOpenError`` (fail fast: make no call)."""
        heard = self._heard
        if heard is not None and heard.free and not self._down:
            age = self._clock() - heard.at
            if 0 <= age < self._interval:
                return _FREE_PERMIT  # closed a moment ago: no round-trip
            if self._sync_lock.acquire(blocking=False):
                try:
                    if self._fresh():  # another thread has just refreshed it
                        return _FREE_PERMIT
                    return self._acquire()
                finally:
                    self._sync_lock.release()
            if 0 <= age < 2 * self._interval:
                return _FREE_PERMIT  # another thread is refreshing it right now
        return self._acquire()

    def record(self, permit: Permit, *, outcome: Outcome, duration: float) -> None:
        """Report how the permitted call went; ``duration`` in seconds."""
        code = _OUTCOME_CODE.get(outcome)
        if code is None:
            raise ValueError("outcome must be 'success', 'failure' or 'ignored'")
        if code == "s" and duration > self.config.slow_call_seconds:
            code = "f"
        if not permit.shared or self._down:
            # A shared permit whose Redis has gone away since counts locally, as a plain call.
            self._report(
                self._local.record(code, "" if permit.shared else permit.token), shared=False
            )
            return
        if permit.probe:  # the probe's outcome decides for the fleet: at once
            reply = self._shared_call("record", code, permit.token)
            if reply is not None:
                self._report(reply, shared=True)
            else:
                self._report(self._local.record(code, ""), shared=False)
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
        self._report(reply, shared=True)
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
        raw = self._eval("force", "", state, reason, by, int(until_s * 1000), urgent=True)
        if raw is None:
            raise SharedStateUnavailable(f"Redis unavailable: {self.config.name!r} not forced")
        if _text(raw[0]) == "until_in_past":
            raise ValueError("until is not in the future by the Redis server's clock")
        until_iso = datetime.fromtimestamp(until_s, tz=UTC).isoformat(timespec="seconds")
        logger.warning(
            "circuit %s forced %s by %s until %s: %s",
            self.config.name, state, by, until_iso, reason,
            extra={"category": "circuit_forced", "breaker": self.config.name, "state": state,
                   "reason": reason, "by": by, "until": until_s},
        )
        reply = _Reply.parse(raw)
        self._hear(reply)
        self._report(reply, shared=True)

    def clear_force(self, *, by: str) -> None:
        """End a forced state; the breaker's own state applies again."""
        reply = self._shared_call("clear", outcomes=False, urgent=True)
        if reply is None:
            raise SharedStateUnavailable(f"Redis unavailable: {self.config.name!r} unchanged")
        logger.warning(
            "circuit %s force cleared by %s", self.config.name, by,
            extra={"category": "circuit_force_cleared", "breaker": self.config.name, "by": by},
        )
        self._report(reply, shared=True)

    def reset(self) -> None:
        """Back to closed with an empty window, shared and local; ends any forced state."""
        self._take_pending()  # forgotten, like the window they were meant for
        self._report(self._local.reset(), shared=False)
        reply = self._shared_call("reset", outcomes=False, urgent=True)
        if reply is not None:
            self._report(reply, shared=True)

    # -- the shared state: cached, batched ------------------------------------------------

    def _acquire(self) -> Permit:
        token = f"{self._token_prefix}:{next(self._tokens)}"
        reply = self._shared_call("acquire", token)
        shared = reply is not None
        if reply is None:
            reply = self._local.acquire(token)
        self._report(reply, shared=shared)
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
            self._report(reply, shared=True)

    def _fresh(self) -> bool:
        """Closed and not forced, as heard less than ``sync_interval`` ago."""
        heard = self._heard
        return (
            heard is not None and heard.free and not self._down
            and 0 <= self._clock() - heard.at < self._interval
        )

    def _would_open(self, heard: _Heard) -> bool:
        """Would the window as last heard plus the unsent counts open it? Under the lock."""
        calls = max(heard.calls, 0) + self._pending_calls
        failures = max(heard.failures, 0) + self._pending_failures
        return (
            calls >= self.config.minimum_calls
            and failures >= self.config.failure_rate_threshold * calls
        )

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
    ) -> _Reply | None:
        """One script call carrying the pending outcomes; None: use the local breaker."""
        if self._factory is None:
            return None  # no shared state at all (nothing is ever pending then)
        batch = self._take_pending() if outcomes else None
        raw = self._eval(op, batch[0] if batch else "", *args, urgent=urgent)
        if raw is None:
            # The outcomes meant for Redis count in this process's own breaker instead.
            for lost in (batch, self._take_pending()):
                if lost is not None:
                    self._report(self._local.merge(lost[1], lost[2]), shared=False)
            return None
        reply = _Reply.parse(raw)
        self._hear(reply)
        return reply

    def _hear(self, reply: _Reply) -> None:
        at = self._clock()
        with self._pending_lock:
            if self._heard is not None and reply.now_ms < self._heard.now_ms:
                return  # a later answer is already in: keep it
            self._offset_ms = reply.now_ms - int(at * 1000)
            self._heard = _Heard(
                free=reply.state == "closed" and reply.forced is None,
                calls=reply.calls, failures=reply.failures, at=at, now_ms=reply.now_ms,
            )

    # -- Redis and fallback -----------------------------------------------------------

    def _eval(self, op: str, *args: Any, urgent: bool = False) -> list[Any] | None:
        """Run one op of the script (args: outcomes batch, then the op's); None: Redis away."""
        if self._factory is None:
            return None
        if self._down and not urgent:
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
            self._mark_down(exc)
            return None
        if self._down:
            self._mark_up()
        return raw

    def _mark_down(self, exc: Exception) -> None:
        with self._lock:
            self._heard = None  # nothing heard from Redis may let a call pass now
            if self._down:
                return
            self._down = True
            self._next_attempt = self._clock() + REDIS_RETRY_SECONDS
        logger.warning(
            "circuit %s: Redis unavailable (%s), using this process's own breaker",
            self.config.name, type(exc).__name__,
            extra={"category": "circuit_fallback", "breaker": self.config.name,
                   "error": type(exc).__name__},
        )
    def _mark_up(self) -> None:
        with self._lock:
            if not self._down:
                return
            self._down = False
        logger.warning(
            "circuit %s: Redis is back, breaker state shared again", self.config.name,
            extra={"category": "circuit_shared_restored", "breaker": self.config.name},
        )

    def _report(self, reply: _Reply, *, shared: bool) -> None:
        """Log a transition this call made and hand it to ``on_transition``."""
        if not reply.t_new:
            return
        snap = reply.snapshot(self.config.name, shared=shared)
        logger.log(
            logging.WARNING if reply.t_new == "open" else logging.INFO,
            "circuit %s: %s -> %s (%s; %d of %d calls failed)",
            self.config.name, reply.t_old, reply.t_new, reply.t_reason,
            snap.failures, snap.calls,
            extra={
                "category": _CATEGORY.get(reply.t_new, "circuit_transition"),
                "breaker": self.config.name,
                "from_state": reply.t_old,
                "to_state": reply.t_new,
                "reason": reply.t_reason,
                "failure_rate": round(snap.failure_rate, 4),
                "calls": snap.calls,
                "failures": snap.failures,
                "forced": snap.forced,
                "shared": shared,
            },
        )
        if self._on_transition is not None:
            try:
                self._on_transition(reply.t_old, reply.t_new, snap)
            except Exception:
                logger.exception(
                    "circuit %s: on_transition callback failed", self.config.name,
                    extra={"category": "circuit_callback_error", "breaker": self.config.name},
                )
