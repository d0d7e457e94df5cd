"""Fault rules: what the proxy should break, for which requests, how many times.

Rules are kept in the order they were added; for each request the first rule whose
filters match *and* whose dice roll succeeds fires (a rule that loses its roll lets the
next one try, so "10% 503s" and "5% latency" can be stacked). Firing decrements `count`;
a rule at zero is removed. `count: null` fires until the rules are cleared.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.errors import stripe_error
from sandbox.http11 import Response

# Forwarded to the gateway (the charge happens), then the answer is broken.
FORWARDING_KINDS = frozenset({"latency", "reset_after", "lose_answer", "truncate", "malformed"})
# Answered (or dropped) by the proxy; the gateway never sees the request.
LOCAL_KINDS = frozenset({"reset_before", "http_500", "http_502", "http_503", "rate_limit", "unauthorized",
                         "forbidden", "http_400"})
# Three delays, told apart by where the time is lost, which decides what a retry sees:
#   latency_before  slow on the way in: the gateway has not seen it yet (key not claimed)
#   slow            the gateway is slow: key claimed, a concurrent retry gets 409
#   latency         slow on the way back: processed and saved, a retry gets the replay
DELAY_KINDS = frozenset({"latency_before", "slow", "latency"})
# `refuse` is not per-request at all: it closes the listening socket for a while.
KINDS = FORWARDING_KINDS | LOCAL_KINDS | DELAY_KINDS | {"refuse"}

DEFAULT_DELAY_MS = 2000
DEFAULT_REFUSE_MS = 1000
_FIELDS = {"kind", "count", "probability", "method", "path_prefix", "delay_ms", "retry_after", "duration_ms"}


class FaultError(ValueError):
    """A rule that cannot be honoured; the message is shown to the person who sent it."""


@dataclass(slots=True)
class FaultRule:
    kind: str
    count: int | None = None
    probability: float = 1.0
    method: str | None = None
    path_prefix: str | None = None
    delay_ms: int = DEFAULT_DELAY_MS
    retry_after: int = 1
    duration_ms: int | None = None
    id: int = 0
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_rule(payload: Any) -> FaultRule:
    """Validate a control-API payload into a rule, loudly: a typo must not silently no-op."""
    if not isinstance(payload, dict):
        raise FaultError("expected a JSON object")
    unknown = set(payload) - _FIELDS
    if unknown:
        raise FaultError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")
    kind = payload.get("kind")
    if kind not in KINDS:
        raise FaultError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")

    count = payload.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultError("count must be a positive integer or null")
    probability = payload.get("probability", 1.0)
    if probability is None:
        probability = 1.0
    if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise FaultError("probability must be a number between 0 and 1")
    method = payload.get("method")
    if method is not None:
        if not isinstance(method, str) or not method:
            raise FaultError("method must be an HTTP method or null")
        method = method.upper()
    path_prefix = payload.get("path_prefix")
    if path_prefix is not None and (not isinstance(path_prefix, str) or not path_prefix.startswith("/")):
        raise FaultError("path_prefix must start with '/' or be null")

    delay_ms = _non_negative_int(payload, "delay_ms", DEFAULT_DELAY_MS)
    retry_after = _non_negative_int(payload, "retry_after", 1)
    duration_ms = payload.get("duration_ms")
    if duration_ms is not None:
        duration_ms = _non_negative_int(payload, "duration_ms", DEFAULT_REFUSE_MS)

    if kind == "refuse":
        # The kernel refuses connections while nothing listens, so the proxy never sees the
        # attempts and cannot count them: a refusal window is measured in time instead.
        if count not in (None, 1):
            raise FaultError("refuse is time-based (nobody can count refused SYNs): use duration_ms, not count")
        if method is not None or path_prefix is not None:
            raise FaultError("refuse applies to new connections, before any request: method/path_prefix make no sense")
        if duration_ms is None:
            duration_ms = delay_ms if "delay_ms" in payload else DEFAULT_REFUSE_MS
        count = 1

    return FaultRule(
        kind=kind,
        count=count,
        probability=float(probability),
        method=method,
        path_prefix=path_prefix,
        delay_ms=delay_ms,
        retry_after=retry_after,
        duration_ms=duration_ms,
    )


def _non_negative_int(payload: dict[str, Any], name: str, default: int) -> int:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FaultError(f"{name} must be a non-negative integer")
    return value


@dataclass
class FaultBook:
    rules: list[FaultRule] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)
    _next_id: int = 1
    _random: random.Random = field(default_factory=random.Random)

    def add(self, rule: FaultRule) -> FaultRule:
        rule.id = self._next_id
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> int:
        removed = len(self.rules)
        self.rules.clear()
        return removed

    def take(self, method: str, path: str) -> FaultRule | None:
        """The rule that fires for this request, already counted, or None."""
        if not self.rules:  # the common case when benchmarking: keep it one check
            return None
        for rule in self.rules:
            if not rule.matches(method, path):
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            self.record(rule)
            return rule
        return None

    def record(self, rule: FaultRule) -> None:
        rule.applied += 1
        self.applied[rule.kind] = self.applied.get(rule.kind, 0) + 1
        if rule.count is not None:
            rule.count -= 1
            if rule.count <= 0:
                self.rules.remove(rule)

    def reset_counts(self) -> None:
        self.applied.clear()


def canned_answer(rule: FaultRule) -> Response:
    """The answer for a LOCAL_KINDS fault that answers (all but reset_before).

    Stripe-shaped, with `Stripe-Should-Retry: true` as Stripe sends on retryable errors
    (stripe-python honours it), and Retry-After where a client is told to back off.
    """
    retry = [("Stripe-Should-Retry", "true")]
    backoff = [("Retry-After", str(rule.retry_after))]
    if rule.kind == "rate_limit":
        return stripe_error(
            429,
            "rate_limit_error",
            "Too many requests hit the API too quickly. (sandbox fault: rate_limit)",
            code="rate_limit",
            headers=retry + backoff,
        )
    if rule.kind == "unauthorized":
        # A wrong or rotated secret key: Stripe authenticates before doing anything.
        return stripe_error(401, "invalid_request_error",
                            "Invalid API Key provided: sk_test_****. (sandbox fault: unauthorized)")
    if rule.kind == "forbidden":
        # A restricted key without the permission this call needs.
        return stripe_error(403, "invalid_request_error",
                            "The provided key does not have the required permissions. (sandbox fault: forbidden)")
    if rule.kind == "http_400":
        return stripe_error(400, "invalid_request_error",
                            "Invalid request. (sandbox fault: http_400)", code="parameter_invalid_empty")
    if rule.kind == "http_503":
        return stripe_error(
            503, "api_error", "The service is temporarily unavailable. (sandbox fault: http_503)", headers=retry + backoff
        )
    if rule.kind == "http_502":
        return stripe_error(502, "api_error", "Bad gateway. (sandbox fault: http_502)", headers=retry)
    return stripe_error(
        500, "api_error", "An unknown error occurred. (sandbox fault: http_500)", headers=retry
    )
