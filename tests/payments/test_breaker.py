"""The gateway circuit breaker against a real Redis (REDIS_URL, default db 15).

Every test uses its own breaker name, so that it shares no key with any other test or
with anyone else's run on the same Redis.

Two modes: ``sync_interval=0`` (EXACT) sends every call and outcome to Redis at once, so a
test can count calls exactly as they reach the shared window and know which call made a
transition; the default ``sync_interval`` (CACHED) trusts a closed state heard from Redis
for that long and sends outcomes in batches, and is what production runs. The counting
rules hold in both when read through ``snapshot`` (which sends the pending outcomes first);
the tests under "cached closed state" pin down how late the cached mode may be.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from payments.gateway.breaker.policy import (
    BreakerConfig,
    BreakerSnapshot,
    CircuitOpenError,
    Permit,
    SharedStateUnavailable,
    breaker_keys,
    breaker_redis_factory,
)
from payments.gateway.breaker.shared import CircuitBreaker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
LOGGER = "payments.gateway.breaker"
EXACT = 0.0
CACHED = BreakerConfig().sync_interval  # the default, 0.25 s
MARGIN = 0.1  # s: scheduling and round-trips on a busy CI machine
modes = pytest.mark.parametrize("sync_interval", [EXACT, CACHED], ids=["exact", "cached"])


# -- helpers ---------------------------------------------------------------------------


class Recorder:
    """Collects on_transition calls; shareable by several breakers (like several processes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, BreakerSnapshot]] = []
        self._lock = threading.Lock()

    def __call__(self, old: str, new: str, snap: BreakerSnapshot) -> None:
        with self._lock:
            self.calls.append((old, new, snap))

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(old, new) for old, new, _ in self.calls]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingRedis(redis.Redis):
    """A real client that counts its script calls, to see how often Redis is tried."""

    attempts = 0

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.attempts += 1
        return super().evalsha(*args, **kwargs)


def counting_factory(url: str) -> tuple[Callable[[], redis.Redis], list[CountingRedis]]:
    built: list[CountingRedis] = []

    def factory() -> redis.Redis:
        client = CountingRedis.from_url(
            url, socket_connect_timeout=0.25, socket_timeout=0.25,
            retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        )
        built.append(client)
        return client

    return factory, built


class TcpProxy:
    """A loopback TCP proxy to Redis that a test can cut and restore: an outage on demand."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._running = threading.Event()
        self._socks: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._running.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                client.settimeout(None)
                upstream = socket.create_connection(self.target)
                self._socks += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._running.clear()
        time.sleep(0.1)  # the accept loop notices within its 0.05 s timeout
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._socks.clear()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ok(breaker: CircuitBreaker, outcome: str = "success", duration: float = 0.05) -> Permit:
    permit = breaker.before_call()
    breaker.record(permit, outcome=outcome, duration=duration)  # type: ignore[arg-type]
    return permit


def fail(breaker: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        ok(breaker, "failure")


def guarded(breaker: CircuitBreaker, call: Callable[[], Any]) -> Any:
    """How the gateway client will use the breaker."""
    permit = breaker.before_call()
    started = time.monotonic()
    try:
        result = call()
    except Exception:
        breaker.record(permit, outcome="failure", duration=time.monotonic() - started)
        raise
    breaker.record(permit, outcome="success", duration=time.monotonic() - started)
    return result


def category_count(caplog: pytest.LogCaptureFixture, category: str) -> int:
    return sum(1 for r in caplog.records if getattr(r, "category", None) == category)


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rds() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # no Redis is a failure here, not a skip: the breaker is about Redis
    yield client
    client.close()


@pytest.fixture
def name(rds: redis.Redis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    rds.delete(*breaker_keys(name))


@pytest.fixture
def make(name: str) -> Callable[..., tuple[CircuitBreaker, Any]]:
    """Build a breaker on the shared state of this test's name (each one is a 'process')."""

    def build(
        *,
        recorder: Callable[[str, str, BreakerSnapshot], None] | None = None,
        factory: Callable[[], redis.Redis] | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> tuple[CircuitBreaker, Any]:
        recorder = recorder or Recorder()
        breaker = CircuitBreaker(
            BreakerConfig(name=name, **config),
            redis_factory=factory or breaker_redis_factory(REDIS_URL),
            on_transition=recorder,
            clock=clock,
        )
        return breaker, recorder

    return build


# -- opening ---------------------------------------------------------------------------


@modes
def test_opens_on_failure_rate_only_after_minimum_calls(make, sync_interval) -> None:
    breaker, rec = make(
        minimum_calls=10, failure_rate_threshold=0.5, open_seconds=60, sync_interval=sync_interval
    )
    fail(breaker, 9)
    assert breaker.snapshot().state == "closed"  # 100 % failures, but only 9 calls
    ok(breaker)  # the 10th call, a success: 9 of 10 failed
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == ("open", 10, 9)
    assert snap.failure_rate == pytest.approx(0.9)
    assert rec.pairs == [("closed", "open")]
    assert rec.calls[0][2].calls == 10 and rec.calls[0][2].failure_rate == pytest.approx(0.9)


# (minimum calls, threshold, successes, failures): the one "would this open?" rule, written
# in Python (BreakerConfig.opens, which the in-process breaker uses) and in the Lua script.
OPENING_CASES = [
    (10, 0.5, 0, 9), (10, 0.5, 1, 9), (10, 0.5, 6, 4), (10, 0.5, 6, 6), (10, 0.5, 7, 6),
    (5, 0.5, 5, 5), (5, 0.5, 6, 5), (4, 0.75, 1, 3), (4, 0.75, 2, 3), (20, 0.1, 18, 2), (20, 0.1, 19, 2),
    (1, 1.0, 0, 1), (1, 1.0, 1, 1), (3, 0.34, 2, 1), (3, 0.33, 2, 1),
]


@pytest.mark.parametrize("store", ["redis", "in-process"])
def test_the_python_rule_and_the_lua_script_open_on_the_same_cases(make, store) -> None:
    # Successes first, then failures: each failure raises the rate, so the circuit ends open
    # exactly when the rule holds for the final counts.
    decided = {}
    for minimum, threshold, successes, failures in OPENING_CASES:
        factory = None if store == "redis" else breaker_redis_factory(f"redis://127.0.0.1:{closed_port()}/15")
        breaker, _ = make(factory=factory, minimum_calls=minimum, failure_rate_threshold=threshold, open_seconds=60,
                          sync_interval=EXACT)
        if store == "redis":
            breaker.reset()  # the test's name is one shared state: each case starts from nothing
        for _ in range(successes):
            ok(breaker)
        fail(breaker, failures)
        config = BreakerConfig(name="rule", minimum_calls=minimum, failure_rate_threshold=threshold)
        decided[(minimum, threshold, successes, failures)] = (
            config.opens(calls=successes + failures, failures=failures), breaker.snapshot().state == "open")
    assert {case: rule for case, (rule, _) in decided.items()} == {case: seen for case, (_, seen) in decided.items()}
    assert any(rule for rule, _ in decided.values()) and not all(rule for rule, _ in decided.values())


@modes
def test_stays_closed_below_threshold_and_opens_at_it(make, sync_interval) -> None:
    breaker, _ = make(
        minimum_calls=10, failure_rate_threshold=0.5, open_seconds=60, sync_interval=sync_interval
    )
    for _ in range(6):
        ok(breaker)
    fail(breaker, 4)  # 4 of 10
    fail(breaker, 1)  # 5 of 11
    assert breaker.snapshot().state == "closed"
    fail(breaker, 1)  # 6 of 12: exactly the threshold
    assert breaker.snapshot().state == "open"


@modes
def test_slow_success_counts_as_failure(make, sync_interval) -> None:
    breaker, _ = make(
        minimum_calls=4, slow_call_seconds=1.0, open_seconds=60, sync_interval=sync_interval
    )
    for _ in range(4):
        ok(breaker, "success", duration=0.9)
    assert breaker.snapshot().failures == 0
    for _ in range(4):
        ok(breaker, "success", duration=1.5)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures) == ("open", 8, 4)


@modes
def test_ignored_outcomes_do_not_count(make, sync_interval) -> None:
    breaker, _ = make(minimum_calls=5, open_seconds=60, sync_interval=sync_interval)
    for _ in range(20):
        ok(breaker, "ignored", duration=30.0)  # declines, even slow ones, are not failures
    assert breaker.snapshot().calls == 0
    for _ in range(5):
        ok(breaker)
    fail(breaker, 4)
    assert breaker.snapshot().state == "closed"  # 4 of 9; the 20 declines don't dilute it
    fail(breaker, 1)  # 5 of 10
    assert breaker.snapshot().state == "open"


@modes
def test_window_slides(make, sync_interval) -> None:
    breaker, _ = make(
        minimum_calls=4, window_seconds=1, open_seconds=60, sync_interval=sync_interval
    )
    fail(breaker, 3)
    time.sleep(1.1)  # those three fall out of the one-second window
    fail(breaker, 1)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls) == ("closed", 1)


# -- open and half-open ----------------------------------------------------------------


def test_open_fails_fast_without_calling(make) -> None:
    breaker, _ = make(minimum_calls=3, open_seconds=30)
    fail(breaker, 3)
    calls = []
    with pytest.raises(CircuitOpenError) as info:
        guarded(breaker, lambda: calls.append("sent"))
    assert calls == []
    assert info.value.state == "open" and info.value.reason == "failure_rate"
    assert 29 < info.value.retry_after <= 30
    assert breaker.snapshot().retry_after == pytest.approx(info.value.retry_after, abs=0.5)


def test_the_fleet_keeps_the_open_time_its_opener_chose(make) -> None:
    # A process configured to open for 0.3 s (a worker, say) must not half-open a breaker that
    # the process which opened it holds open for 30 s: the opener's decision is the fleet's.
    rec = Recorder()
    opener, _ = make(recorder=rec, minimum_calls=3, open_seconds=30, sync_interval=EXACT)
    hasty, _ = make(recorder=rec, minimum_calls=3, open_seconds=0.3, sync_interval=EXACT)
    fail(opener, 3)
    time.sleep(0.4)
    with pytest.raises(CircuitOpenError) as info:
        hasty.before_call()
    assert info.value.state == "open" and 29 < info.value.retry_after <= 30
    assert hasty.snapshot().state == "open"
    assert rec.pairs == [("closed", "open")]
    # Opened by the hasty one, it is its 0.3 s that holds.
    opener.reset()
    fail(hasty, 3)
    time.sleep(0.4)
    permit = opener.before_call()
    assert permit.probe


def test_half_open_grants_one_probe_to_many_threads(make) -> None:
    rec = Recorder()
    breakers = [make(recorder=rec, minimum_calls=3, open_seconds=0.3)[0] for _ in range(2)]
    fail(breakers[0], 3)
    time.sleep(0.35)
    start = threading.Barrier(32)

    def attempt(i: int) -> Permit | CircuitOpenError:
        start.wait()
        try:
            return breakers[i % 2].before_call()
        except CircuitOpenError as exc:
            return exc

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(attempt, range(32)))
    permits = [r for r in results if isinstance(r, Permit)]
    refusals = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(permits) == 1 and permits[0].probe
    assert len(refusals) == 31
    assert all(r.state == "half_open" and r.reason == "probe_in_flight" for r in refusals)
    assert all(10 < r.retry_after <= 15 for r in refusals)  # the probe lease
    assert rec.pairs == [("closed", "open"), ("open", "half_open")]


def _race_for_probe(name: str, barrier: Any, results: Any) -> None:
    """In a spawned process: eight threads ask for a permit the moment the barrier opens."""
    rec = Recorder()
    breaker = CircuitBreaker(
        BreakerConfig(name=name, minimum_calls=3, open_seconds=0.3),
        redis_factory=breaker_redis_factory(REDIS_URL), on_transition=rec,
    )
    breaker.snapshot()  # connect and load the script before the race
    barrier.wait()

    def attempt(_: int) -> bool:
        try:
            return breaker.before_call().probe
        except CircuitOpenError:
            return False

    with ThreadPoolExecutor(8) as pool:
        probes = sum(pool.map(attempt, range(8)))
    results.put((os.getpid(), probes, rec.pairs))


def test_half_open_grants_one_probe_across_processes(make, name) -> None:
    breaker, _ = make(minimum_calls=3, open_seconds=0.3)
    fail(breaker, 3)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_race_for_probe, args=(name, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.35)  # open_seconds pass
    barrier.wait(timeout=20)  # both children are connected and ready: go
    got = [results.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert len({pid for pid, _, _ in got}) == 2
    assert sum(probes for _, probes, _ in got) == 1
    # exactly one process made, and reported, the open -> half_open transition
    assert sorted(len(pairs) for _, _, pairs in got) == [0, 1]
    assert [pairs for _, _, pairs in got if pairs] == [[("open", "half_open")]]


def test_probe_success_closes_with_an_empty_window(make) -> None:
    breaker, rec = make(minimum_calls=3, open_seconds=0.2)
    fail(breaker, 3)
    time.sleep(0.25)
    probe = breaker.before_call()
    assert probe.probe
    breaker.record(probe, outcome="success", duration=0.1)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures, snap.opened_at) == ("closed", 0, 0, None)
    assert not breaker.before_call().probe
    assert rec.pairs == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert rec.calls[-1][2].state == "closed"


@pytest.mark.parametrize(("outcome", "duration"), [("failure", 0.1), ("success", 9.0)])
def test_probe_failure_or_slowness_reopens(make, outcome: str, duration: float) -> None:
    breaker, rec = make(minimum_calls=3, open_seconds=0.2)
    fail(breaker, 3)
    first_open = breaker.snapshot().opened_at
    time.sleep(0.25)
    probe = breaker.before_call()
    breaker.record(probe, outcome=outcome, duration=duration)  # type: ignore[arg-type]
    snap = breaker.snapshot()
    assert snap.state == "open" and snap.opened_at > first_open
    with pytest.raises(CircuitOpenError) as info:
        breaker.before_call()
    assert info.value.reason == "probe_failed"
    assert rec.pairs[-1] == ("half_open", "open")


def test_crashed_prober_loses_its_lease(make) -> None:
    breaker, rec = make(minimum_calls=3, open_seconds=0.2, probe_lease_seconds=0.3)
    fail(breaker, 3)
    time.sleep(0.25)
    lost = breaker.before_call()  # this prober never reports
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    time.sleep(0.35)
    second = breaker.before_call()
    assert second.probe
    breaker.record(lost, outcome="failure", duration=0.1)  # too late: decides nothing
    assert breaker.snapshot().state == "half_open"
    breaker.record(second, outcome="success", duration=0.1)
    assert breaker.snapshot().state == "closed"


# -- sharing ---------------------------------------------------------------------------


def _record_failures(name: str, n: int) -> None:
    breaker = CircuitBreaker(
        BreakerConfig(name=name, minimum_calls=5, open_seconds=60, sync_interval=EXACT),
        redis_factory=breaker_redis_factory(REDIS_URL),
    )
    fail(breaker, n)


def test_processes_share_state(make, name) -> None:
    # EXACT: each outcome is in Redis when record returns, so the other process's 4th
    # failure is the call that opens the circuit, and that process reports it.
    breaker, rec = make(minimum_calls=5, open_seconds=60, sync_interval=EXACT)
    ok(breaker)  # this process: one success; the other: four failures, 4 of 5
    proc = multiprocessing.get_context("spawn").Process(target=_record_failures, args=(name, 4))
    proc.start()
    proc.join(timeout=20)
    assert proc.exitcode == 0
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failures, snap.shared) == ("open", 5, 4, True)
    assert rec.pairs == []  # the other process made the transition, so it reported it


@modes
def test_each_transition_reported_once_under_contention(make, caplog, sync_interval) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    rec = Recorder()
    breakers = [
        make(recorder=rec, minimum_calls=20, open_seconds=60, sync_interval=sync_interval)[0]
        for _ in range(3)
    ]

    def hammer(i: int) -> None:
        breaker = breakers[i % 3]
        for _ in range(10):
            with contextlib.suppress(CircuitOpenError):
                ok(breaker, "failure")

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(hammer, range(12)))
    for breaker in breakers:
        breaker.flush()  # CACHED: a last few failures may still be unsent; changes nothing
    assert rec.pairs == [("closed", "open")]
    assert category_count(caplog, "circuit_open") == 1
    record = next(r for r in caplog.records if getattr(r, "category", "") == "circuit_open")
    assert record.breaker == breakers[0].config.name
    assert record.reason == "failure_rate" and record.failure_rate == 1.0 and record.calls >= 20


def test_callback_errors_do_not_reach_the_caller(make, caplog) -> None:
    def broken(old: str, new: str, snap: BreakerSnapshot) -> None:
        raise RuntimeError("alerting is down")

    breaker, _ = make(recorder=broken, minimum_calls=2, open_seconds=60)
    fail(breaker, 2)  # would raise here if the callback's error escaped
    assert breaker.snapshot().state == "open"
    assert category_count(caplog, "circuit_callback_error") == 1


def test_every_key_expires(make, rds) -> None:
    breaker, _ = make(minimum_calls=3, open_seconds=0.2)
    fail(breaker, 3)
    time.sleep(0.25)
    breaker.before_call()  # holds the probe lease
    breaker.force(state="closed", reason="drill", until=time.time() + 60, by="ops")
    ttls = {key: rds.pttl(key) for key in breaker_keys(breaker.config.name)}
    assert all(ttl > 0 for ttl in ttls.values()), ttls


# -- cached closed state (the default sync_interval) ----------------------------------


def test_closed_hot_path_goes_to_redis_once_per_sync_interval(make) -> None:
    factory, built = counting_factory(REDIS_URL)
    breaker, rec = make(factory=factory, minimum_calls=5)
    ok(breaker)  # hears "closed"
    before = built[0].attempts
    stop = time.monotonic() + 1.0
    done = [0] * 8

    def hammer(i: int) -> None:
        while time.monotonic() < stop:
            ok(breaker)
            done[i] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hammer, range(8)))
    elapsed = time.monotonic() - started
    made = built[0].attempts - before
    # One refresh per sync_interval (by whichever thread found it due), not one per call.
    print(f"{sum(done)} calls from 8 threads in {elapsed:.2f} s: {made} script calls")
    assert made <= elapsed / CACHED + 3, (made, sum(done))
    assert sum(done) > 20 * made
    snap = breaker.snapshot()  # sends what is still pending: every call is counted
    assert (snap.state, snap.calls, snap.failures) == ("closed", sum(done) + 1, 0)
    assert rec.pairs == []


def test_closed_hot_path_is_fast(make) -> None:
    breaker, _ = make()
    for _ in range(50):
        ok(breaker)
    samples = []
    for _ in range(5000):
        started = time.perf_counter()
        ok(breaker)
        samples.append(time.perf_counter() - started)
    cuts = statistics.quantiles(samples, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(f"closed hot path (permit + record) over 5000 calls: p50 {p50:.4f} ms, p99 {p99:.3f} ms")
    assert p50 < 0.05  # no round-trip: a Redis EVALSHA alone takes longer than that
    assert p99 < 5.0


def test_failure_burst_in_one_process_opens_at_once(make, rds) -> None:
    """Near the threshold a failure is sent at once, not a sync_interval later."""
    factory, built = counting_factory(REDIS_URL)
    breaker, rec = make(factory=factory, minimum_calls=10, open_seconds=60)
    for _ in range(20):
        ok(breaker)
    state_key = breaker_keys(breaker.config.name)[0]
    for i in range(1, 21):
        ok(breaker, "failure")
        if i < 20:  # 19 of 39 by this process's count: still below the threshold
            assert rec.pairs == [], i
    # The 20th failure (20 of 40) opened the circuit in Redis, within its own record call.
    assert rec.pairs == [("closed", "open")]
    assert rds.hget(state_key, "state") == b"open"
    assert rec.calls[0][2].calls == 40 and rec.calls[0][2].failures == 20
    assert built[0].attempts < 20  # not one round-trip per call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_other_process_sees_an_opened_circuit_within_sync_interval(make) -> None:
    rec = Recorder()
    opener, _ = make(recorder=rec, minimum_calls=5, open_seconds=60)
    other, _ = make(recorder=rec, minimum_calls=5, open_seconds=60)
    ok(other)  # hears "closed" now; it may trust that for one sync_interval
    fail(opener, 5)  # a burst: opens at the 5th failure, reported by the opener
    opened = time.monotonic()
    assert rec.pairs == [("closed", "open")]
    passed = 0
    while True:
        try:
            other.before_call()  # a permit taken and not recorded: nothing counted
            passed += 1
        except CircuitOpenError as exc:
            seen = time.monotonic() - opened
            assert exc.state == "open" and exc.reason == "failure_rate"
            break
        assert time.monotonic() - opened < 2, "never saw the open circuit"
        time.sleep(0.002)
    assert seen <= CACHED + MARGIN, seen
    print(f"seen open after {seen * 1000:.0f} ms, {passed} calls let through meanwhile")
    assert rec.pairs == [("closed", "open")]  # the other process reports nothing


def _open_by_burst(name: str, go: Any, results: Any) -> None:
    """In a spawned process: a burst of failures, with the default sync_interval."""
    rec = Recorder()
    breaker = CircuitBreaker(
        BreakerConfig(name=name, minimum_calls=5, open_seconds=60),
        redis_factory=breaker_redis_factory(REDIS_URL), on_transition=rec,
    )
    breaker.snapshot()  # connect and load the script first
    go.wait(timeout=20)
    fail(breaker, 5)
    results.put((time.time(), rec.pairs))


def test_another_process_sees_an_opened_circuit_within_sync_interval(make, name) -> None:
    watcher, rec = make(minimum_calls=5, open_seconds=60)
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_open_by_burst, args=(name, go, results))
    proc.start()
    watcher.before_call()  # hears "closed" (its permits are never recorded: nothing counted)
    stop = threading.Event()
    seen_at: list[float] = []

    def watch() -> None:  # this process keeps calling, on its cached closed state
        while not stop.is_set():
            try:
                watcher.before_call()
            except CircuitOpenError:
                seen_at.append(time.time())
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.5)  # the watcher is in its steady state: a refresh every sync_interval
    go.set()
    opened_at, pairs = results.get(timeout=20)
    thread.join(timeout=5)
    stop.set()
    proc.join(timeout=10)
    assert proc.exitcode == 0
    assert pairs == [("closed", "open")]  # the burst opened it in the other process, at once
    assert seen_at, "this process never saw the open circuit"
    assert seen_at[0] - opened_at <= CACHED + MARGIN, seen_at[0] - opened_at
    assert rec.pairs == []


def test_force_by_another_process_is_seen_within_sync_interval(make) -> None:
    rec = Recorder()
    ops, _ = make(recorder=rec)
    other, _ = make(recorder=rec)
    ok(other)  # hears "closed"
    ops.force(state="open", reason="drill", until=time.time() + 60, by="ops")
    forced = time.monotonic()
    while True:
        try:
            other.before_call()
        except CircuitOpenError as exc:
            seen = time.monotonic() - forced
            assert exc.reason == "forced by ops: drill"
            break
        assert time.monotonic() - forced < 2, "never saw the force"
        time.sleep(0.002)
    assert seen <= CACHED + MARGIN, seen
    # While forced, every call asks Redis: clearing it is seen by the very next call.
    ops.clear_force(by="ops")
    ok(other)
    assert rec.pairs == [("closed", "open"), ("open", "closed")]


def test_outcomes_pending_when_redis_goes_away_count_locally(make, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    target = redis.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    proxy = TcpProxy((target.get("host", "127.0.0.1"), target.get("port", 6379)))
    proxy.start()
    clock = FakeClock()
    breaker, rec = make(
        factory=breaker_redis_factory(f"redis://127.0.0.1:{proxy.port}/{target.get('db', 0)}"),
        clock=clock, minimum_calls=4, open_seconds=60,
    )
    try:
        ok(breaker)  # hears "closed": the next calls pass on that, their outcomes pending
        fail(breaker, 2)  # 2 of 3 by this process's count: below the minimum, not sent
        proxy.stop()
        clock.advance(CACHED)  # due: the next call tries Redis, fails, falls back
        fail(breaker, 1)
        snap = breaker.snapshot()
        # The pending outcomes counted in the local breaker, with the failure that tripped it.
        assert (snap.shared, snap.state, snap.calls, snap.failures) == (False, "open", 4, 3)
        assert rec.pairs == [("closed", "open")] and not rec.calls[0][2].shared
        assert category_count(caplog, "circuit_fallback") == 1
    finally:
        proxy.stop()


def test_sync_interval_is_validated() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(sync_interval=-0.1)
    assert BreakerConfig().sync_interval == 0.25


# -- Redis away ------------------------------------------------------------------------


def test_redis_unavailable_falls_back_to_local_breaker(make, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    factory, built = counting_factory(f"redis://127.0.0.1:{closed_port()}/15")
    breaker, rec = make(factory=factory, clock=clock, minimum_calls=5, open_seconds=10)

    started = time.monotonic()
    for _ in range(5):
        ok(breaker)
        clock.advance(0.1)
    fail(breaker, 5)  # 5 of 10: opens, locally
    assert time.monotonic() - started < 2  # a dead Redis does not stall calls
    snap = breaker.snapshot()
    assert (snap.state, snap.shared, snap.calls, snap.failures) == ("open", False, 10, 5)
    with pytest.raises(CircuitOpenError):
        breaker.before_call()

    clock.advance(10)
    probe = breaker.before_call()
    assert probe.probe and not probe.shared
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # one probe locally too
    breaker.record(probe, outcome="success", duration=0.1)
    assert breaker.snapshot().state == "closed"

    assert rec.pairs == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(not snap.shared for _, _, snap in rec.calls)
    assert category_count(caplog, "circuit_fallback") == 1
    assert category_count(caplog, "circuit_shared_restored") == 0

    # Redis is not asked on every call while it is away: at most once every 2 s.
    tries_before = built[0].attempts
    for _ in range(100):
        ok(breaker)
        clock.advance(0.1)
    assert 4 <= built[0].attempts - tries_before <= 6  # 10 s of calls
    assert category_count(caplog, "circuit_fallback") == 1


def test_unresponsive_redis_costs_one_short_timeout(make) -> None:
    with socket.socket() as blackhole:  # accepts connections (backlog), never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        url = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/15"
        breaker, _ = make(factory=breaker_redis_factory(url), minimum_calls=3)
        started = time.monotonic()
        first = breaker.before_call()
        assert time.monotonic() - started < 0.6  # the 0.25 s read timeout, once
        assert not first.shared
        started = time.monotonic()
        for _ in range(50):
            ok(breaker)
        assert time.monotonic() - started < 0.2  # and then no more waiting
        assert breaker.snapshot().shared is False


def test_force_needs_redis(make) -> None:
    breaker, _ = make(factory=breaker_redis_factory(f"redis://127.0.0.1:{closed_port()}/15"))
    with pytest.raises(SharedStateUnavailable):
        breaker.force(state="open", reason="maintenance", until=time.time() + 60, by="ops")


def test_fallback_then_restored(make, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    target = redis.Redis.from_url(REDIS_URL).connection_pool.connection_kwargs
    proxy = TcpProxy((target.get("host", "127.0.0.1"), target.get("port", 6379)))
    proxy.start()
    clock = FakeClock()
    breaker, _ = make(
        factory=breaker_redis_factory(f"redis://127.0.0.1:{proxy.port}/{target.get('db', 0)}"),
        clock=clock, minimum_calls=4, open_seconds=60,
    )
    peer, _ = make(minimum_calls=4, open_seconds=60)  # straight to Redis, never cut off
    try:
        ok(breaker)
        assert breaker.snapshot().shared

        proxy.stop()
        for _ in range(20):
            ok(breaker)
            clock.advance(0.05)
        assert not breaker.snapshot().shared
        assert category_count(caplog, "circuit_fallback") == 1

        fail(peer, 3)  # meanwhile the fleet opens the shared circuit (3 of 4 calls)
        proxy.start()
        ok(breaker)  # within 2 s of the last try: still local, and the local circuit is closed
        assert category_count(caplog, "circuit_shared_restored") == 0
        clock.advance(2.1)
        with pytest.raises(CircuitOpenError):
            breaker.before_call()  # tried Redis again: shared, and open
        assert breaker.snapshot().shared
        assert category_count(caplog, "circuit_shared_restored") == 1
        assert category_count(caplog, "circuit_fallback") == 1
    finally:
        proxy.stop()


# -- forced state ----------------------------------------------------------------------


def test_forced_open_with_expiry(make, caplog) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    rec = Recorder()
    breaker, _ = make(recorder=rec)
    other, _ = make(recorder=rec)
    breaker.force(state="open", reason="gateway maintenance", until=time.time() + 0.5, by="alice")
    calls = []
    with pytest.raises(CircuitOpenError) as info:
        guarded(other, lambda: calls.append("sent"))
    assert calls == []
    assert info.value.reason == "forced by alice: gateway maintenance"
    assert 0 < info.value.retry_after <= 0.5
    snap = other.snapshot()
    assert snap.state == "open"
    assert snap.forced is not None
    assert {k: snap.forced[k] for k in ("state", "reason", "by")} == {
        "state": "open", "reason": "gateway maintenance", "by": "alice",
    }
    assert snap.forced["until"] == pytest.approx(time.time() + 0.5, abs=0.5)

    time.sleep(0.55)
    ok(other)
    ok(breaker)
    assert breaker.snapshot().forced is None
    assert rec.pairs == [("closed", "open"), ("open", "closed")]
    assert [snap.forced is not None for _, _, snap in rec.calls] == [True, False]
    assert category_count(caplog, "circuit_forced") == 1


def test_forced_closed_overrides_an_open_circuit_until_cleared(make) -> None:
    breaker, rec = make(minimum_calls=3, open_seconds=60)
    fail(breaker, 3)
    breaker.force(state="closed", reason="false alarm", until=time.time() + 60, by="bob")
    for _ in range(5):
        ok(breaker, "failure")  # obeyed: calls go through and change nothing
    snap = breaker.snapshot()
    assert snap.state == "closed" and snap.forced["by"] == "bob" and snap.calls == 8
    breaker.clear_force(by="bob")
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    assert rec.pairs == [("closed", "open"), ("open", "closed"), ("closed", "open")]


def test_force_rejects_bad_input(make) -> None:
    breaker, _ = make()
    with pytest.raises(ValueError):
        breaker.force(state="half_open", reason="x", until=time.time() + 60, by="ops")
    with pytest.raises(ValueError):
        breaker.force(state="open", reason="x", until=time.time() - 1, by="ops")
    with pytest.raises(ValueError):
        breaker.force(state="open", reason="", until=time.time() + 60, by="ops")
    assert breaker.snapshot().forced is None


def test_reset(make) -> None:
    breaker, rec = make(minimum_calls=3, open_seconds=60)
    fail(breaker, 3)
    breaker.reset()
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.forced) == ("closed", 0, None)
    assert rec.pairs == [("closed", "open"), ("open", "closed")]


# -- speed -----------------------------------------------------------------------------


def test_open_fast_path_is_fast(make) -> None:
    breaker, _ = make(minimum_calls=3, open_seconds=600)
    fail(breaker, 3)
    for _ in range(50):  # warm up: connection, script cache
        with pytest.raises(CircuitOpenError):
            breaker.before_call()
    samples = []
    for _ in range(2000):
        started = time.perf_counter()
        try:
            breaker.before_call()
        except CircuitOpenError:
            pass
        else:
            pytest.fail("the circuit let a call through")
        samples.append(time.perf_counter() - started)
    cuts = statistics.quantiles(samples, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(f"open fast path over 2000 calls: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    assert p99 < 5.0
