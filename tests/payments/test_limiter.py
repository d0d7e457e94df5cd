"""The gateway concurrency limit: what a caller over it gets, and how the limit follows the
gateway's latency (AIMD, payments.gateway.limiter)."""

from __future__ import annotations

import pytest

from payments.gateway.limiter import ConcurrencyLimiter, LimiterConfig, signal_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(**config: float) -> tuple[ConcurrencyLimiter, Clock]:
    clock = Clock()
    return ConcurrencyLimiter(LimiterConfig(**{"max_limit": 8, "min_limit": 2, "slow_call_seconds": 1.0,
                                               **config}), clock=clock), clock


def test_calls_over_the_limit_are_refused_and_counted() -> None:
    limiter, _ = make(max_limit=3)
    slots = [limiter.try_acquire() for _ in range(5)]
    assert [s is not None for s in slots] == [True, True, True, False, False]
    stats = limiter.stats()
    assert (stats["in_flight"], stats["limit"], stats["shed"], stats["calls"]) == (3, 3, 2, 3)
    limiter.release(slots[0], signal="fast")
    assert limiter.try_acquire() is not None


def test_one_round_of_slow_calls_cuts_the_limit_once() -> None:
    limiter, clock = make()
    slots = [limiter.try_acquire() for _ in range(8)]
    clock.now += 2.0  # all eight took 2 s: slower than the 1 s threshold
    for slot in slots:
        limiter.release(slot, signal="fast")
    stats = limiter.stats()
    assert (stats["limit"], stats["slow"], stats["cuts"]) == (6, 8, 1)  # 8 x 0.75, not 8 x 0.75^8


def test_a_slow_gateway_brings_the_limit_to_its_floor_and_a_fast_one_back() -> None:
    limiter, clock = make()
    for _ in range(10):  # ten rounds of slow calls
        slot = limiter.try_acquire()
        clock.now += 2.0
        limiter.release(slot, signal="fast")
    assert limiter.limit == 2
    for _ in range(200):  # fast calls, the limit in use
        slots = [limiter.try_acquire() for _ in range(limiter.limit)]
        clock.now += 0.1
        for slot in slots:
            limiter.release(slot, signal="fast")
    assert limiter.limit == 8


def test_timeouts_and_429_cut_and_declines_do_not() -> None:
    assert signal_for("timeout") == signal_for("rate_limited") == "overload"
    assert signal_for("declined") == "fast"
    assert signal_for("http_5xx") == signal_for("circuit_open") == "ignored"  # the breaker's business
    limiter, clock = make()
    limiter.release(limiter.try_acquire(), signal="overload")
    assert limiter.limit == 6


def test_an_idle_process_does_not_grow_past_what_it_used() -> None:
    limiter, clock = make()
    limiter.release(limiter.try_acquire(), signal="overload")
    limiter.release(limiter.try_acquire(), signal="overload")
    assert limiter.limit == 4
    for _ in range(50):  # one call at a time: the limit of 4 is never in use
        clock.now += 0.1
        limiter.release(limiter.try_acquire(), signal="fast")
    assert limiter.limit == 4


def test_retry_after_is_about_one_call() -> None:
    limiter, clock = make(slow_call_seconds=10.0)
    assert limiter.retry_after() == 1.0
    slot = limiter.try_acquire()
    clock.now += 4.0
    limiter.release(slot, signal="fast")
    assert limiter.retry_after() == pytest.approx(4.0)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        LimiterConfig(max_limit=2, min_limit=3)
    with pytest.raises(ValueError):
        LimiterConfig(backoff=1.0)
