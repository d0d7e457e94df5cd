"""This process's payment figures: outcomes, gateway calls (latency, timeouts, answers,
retries) and refunds, counted since the process started.

Counting is a few dictionary increments under one lock, never I/O, so it costs a payment
next to nothing; the health publisher copies `figures_snapshot()` into the document each
process already publishes to Redis, and the health run turns the totals into per-interval
figures by difference (a restarted process starts again from zero under a new pid).

Latency buckets are fixed fractions of the read timeout (PAYMENT_TIMEOUT), the same in
every process, so the fleet's histograms add up bucket by bucket and percentiles can be
read from the sum; the bounds at one half and four fifths of the timeout are where the
latency alerts look.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from payments.gateway.results import GatewayResult

# Upper bounds of the latency buckets as fractions of the read timeout; +Inf follows.
LATENCY_FRACTIONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
                     0.6, 0.7, 0.8, 0.9, 1.0)
PAYMENT_OUTCOMES = ("succeeded", "failed", "unknown", "requires_action", "canceled", "shed")
REFUND_OUTCOMES = ("succeeded", "failed", "unknown", "pending")
# Decline codes come from the gateway; past this many distinct ones the rest count as "other"
# so a misbehaving gateway cannot grow the published document without bound.
MAX_CODES = 50
OTHER = "other"

# What a call is for, by method and path: latency of a payment is not that of a health probe.
OPERATIONS = ("payment_create", "payment_retrieve", "refund_create", "probe", "other")


def latency_buckets() -> tuple[float, ...]:
    """Upper bounds in seconds (ms resolution), the last one the read timeout itself."""
    timeout = float(settings.PAYMENT_TIMEOUT)
    return tuple(round(fraction * timeout, 3) for fraction in LATENCY_FRACTIONS)


def operation_of(method: str, path: str) -> str:
    path = path.split("?")[0]
    if path == "/v1/payment_intents":
        return "payment_create" if method == "POST" else "other"
    if path.startswith("/v1/payment_intents/"):
        return "payment_retrieve" if method == "GET" else "other"
    if path == "/v1/refunds" and method == "POST":
        return "refund_create"
    if path == "/v1/balance":
        return "probe"
    return "other"


class _Calls:
    """One operation's gateway calls: each try on the wire and each logical call."""

    def __init__(self, buckets: int) -> None:
        self.calls = 0  # logical calls (with their retries)
        self.attempts = 0  # requests on the wire
        self.retries = 0
        self.timeouts = 0
        self.connect_errors = 0
        self.answers: Counter[str] = Counter()  # HTTP status of each try ("200", "409", "503"...)
        self.bucket_counts = [0] * (buckets + 1)  # the last one is +Inf
        self.latency_sum = 0.0
        self.latency_count = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "attempts": self.attempts, "retries": self.retries, "timeouts": self.timeouts,
            "connect_errors": self.connect_errors,
            "answers": dict(self.answers), "latency": {"counts": list(self.bucket_counts),
                                                       "sum": round(self.latency_sum, 6),
                                                       "count": self.latency_count},
        }


class PaymentFigures:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bounds = latency_buckets()
        self._payments: Counter[str] = Counter()
        self._declines: Counter[str] = Counter()
        self._refunds: Counter[str] = Counter()
        self._calls: dict[str, _Calls] = {}

    def gateway_call(self, *, operation: str, result: GatewayResult) -> None:
        with self._lock:
            calls = self._calls.get(operation)
            if calls is None:
                calls = self._calls[operation] = _Calls(len(self._bounds))
            calls.calls += 1
            calls.retries += max(0, len(result.attempts) - 1)
            for attempt in result.attempts:
                calls.attempts += 1
                if attempt.http_status is not None:
                    calls.answers[str(attempt.http_status)] += 1
                if attempt.outcome == "timeout":
                    calls.timeouts += 1
                if attempt.outcome == "connect_error":
                    # Nothing reached the gateway: no latency of the gateway to count.
                    calls.connect_errors += 1
                    continue
                seconds = attempt.duration_ms / 1000.0
                calls.bucket_counts[_bucket_index(self._bounds, seconds)] += 1
                calls.latency_sum += seconds
                calls.latency_count += 1

    def payment_outcome(self, *, status: str, failure_code: str) -> None:
        with self._lock:
            self._payments[status if status in PAYMENT_OUTCOMES else OTHER] += 1
            if status == "failed":
                self._declines[_bounded(self._declines, failure_code or "unspecified")] += 1

    def refund_outcome(self, *, status: str) -> None:
        with self._lock:
            self._refunds[status if status in REFUND_OUTCOMES else OTHER] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "buckets": list(self._bounds),
                "payments": dict(self._payments),
                "declines": dict(self._declines),
                "refunds": dict(self._refunds),
                "gateway": {operation: calls.as_dict() for operation, calls in self._calls.items()},
            }


def _bucket_index(bounds: tuple[float, ...], seconds: float) -> int:
    for index, bound in enumerate(bounds):
        if seconds <= bound:
            return index
    return len(bounds)


def _bounded(counter: Counter[str], code: str) -> str:
    code = code[:64]
    return code if code in counter or len(counter) < MAX_CODES else OTHER


_figures = PaymentFigures()


def _after_fork_in_child() -> None:
    # A gunicorn worker forked from a master that already counted starts from zero, as its pid does.
    global _figures
    _figures = PaymentFigures()


os.register_at_fork(after_in_child=_after_fork_in_child)


def record_gateway_call(*, method: str, path: str, result: GatewayResult) -> None:
    """Counts one logical gateway call and each of its tries (latency, answer, timeout)."""
    _figures.gateway_call(operation=operation_of(method, path), result=result)


def record_payment_outcome(*, status: str, failure_code: str = "") -> None:
    """Counts a payment reaching an outcome for its client: succeeded, failed (with its decline
    code), unknown, requires_action, canceled, or shed (answered 503 without being sent)."""
    _figures.payment_outcome(status=status, failure_code=failure_code)


def record_refund_outcome(*, status: str) -> None:
    """Counts a refund reaching an outcome: succeeded, failed, unknown or pending."""
    _figures.refund_outcome(status=status)


def figures_snapshot() -> dict[str, Any]:
    """This process's totals since it started, JSON-ready, for the published pool figures."""
    return _figures.snapshot()


def figures_reset() -> None:
    """Tests only: a test's tally starts from zero."""
    _after_fork_in_child()
