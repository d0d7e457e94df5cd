"""The fleet's payment figures for one health interval.

Every process publishes its totals since it started (payments.figures); a health run stores
the totals it read beside its reading, and the next run subtracts them process by process,
so each payment is counted in exactly one interval whichever process served it and however
late it published. A process seen for the first time counts from zero; one whose totals went
down restarted under the same id and counts from zero again.
"""

from __future__ import annotations

from typing import Any

from payments.figures import latency_buckets

LATENCY_OPERATION = "payment_create"  # the latency ops watch is that of taking a payment
NOT_TRAFFIC = frozenset({"probe"})  # the health check's own calls are not payments
# Final outcomes: requires_action waits for the customer and ends in one of these later.
FINAL_OUTCOMES = ("succeeded", "failed", "unknown", "canceled", "shed")
TOP_CODES = 10
CARRY_FOR = 3600.0  # s a process missing from the fleet view keeps its last totals
QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


def fleet_totals(docs: list[dict[str, Any]], *, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The totals of every process that counted anything, and when the newest was published.

    A process the baseline knew but this view lacks (Redis away, or a publisher that missed
    its turns) keeps its last totals for a while: when it shows again, only what it did
    since is new. One unseen for CARRY_FOR seconds is taken as gone."""
    at = max((doc.get("at", 0.0) for doc in docs), default=None)
    processes = {doc["process"]: doc["payments"] for doc in docs if _counted(doc.get("payments"))}
    seen = {process: at for process in processes}
    if baseline:
        for process, totals in baseline.get("processes", {}).items():
            last = baseline.get("seen", {}).get(process, baseline.get("at"))
            if process not in processes and at is not None and last is not None and at - last < CARRY_FOR:
                processes[process], seen[process] = totals, last
    return {"at": at, "processes": processes, "seen": seen}


def interval_figures(*, totals: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, Any]:
    """What the fleet did between the baseline's totals and these: counts, rates, percentiles."""
    previous = (baseline or {}).get("processes", {})
    bounds = list(latency_buckets())
    merged: dict[str, Any] = {}
    for process, current in totals["processes"].items():
        before = previous.get(process)
        delta = _difference(current, before) if before is not None else current
        if delta is None:  # went down: the process restarted under the same id
            delta = current
        if delta.get("buckets") != bounds:
            # Another read timeout (a deploy in progress): counts add up, its histogram cannot.
            delta = {**delta, "gateway": {op: {**calls, "latency": None}
                                          for op, calls in delta.get("gateway", {}).items()}}
        merged = _sum(merged, {key: value for key, value in delta.items() if key != "buckets"})
    seconds = None
    if baseline and baseline.get("at") and totals.get("at"):
        seconds = round(max(0.0, totals["at"] - baseline["at"]), 1) or None
    reporting = sum(1 for seen in totals.get("seen", {}).values() if seen == totals["at"])
    return _reading(merged, bounds=bounds, seconds=seconds, processes=reporting)


def _reading(merged: dict[str, Any], *, bounds: list[float], seconds: float | None,
             processes: int) -> dict[str, Any]:
    payments = {status: int(merged.get("payments", {}).get(status, 0))
                for status in (*FINAL_OUTCOMES, "requires_action")}
    final = sum(payments[status] for status in FINAL_OUTCOMES)
    # Codes seen before but not in this interval take no place among its top codes.
    declines = sorted(((code, count) for code, count in merged.get("declines", {}).items() if count),
                      key=lambda item: (-item[1], item[0]))
    calls = {op: figures for op, figures in merged.get("gateway", {}).items() if op not in NOT_TRAFFIC}
    attempts = sum(c.get("attempts", 0) for c in calls.values())
    timeouts = sum(c.get("timeouts", 0) for c in calls.values())
    answers: dict[str, int] = {}
    for c in calls.values():
        for code, count in c.get("answers", {}).items():
            answers[code] = answers.get(code, 0) + count
    server_errors = sum(count for code, count in answers.items() if code.startswith("5"))
    creating = calls.get(LATENCY_OPERATION, {})
    latency = creating.get("latency") or {"counts": [0] * (len(bounds) + 1), "sum": 0.0, "count": 0}
    return {
        "interval_s": seconds,
        "processes": processes,
        "payments": payments,
        "total": final,
        "success_rate_pct": _pct(payments["succeeded"], final),
        "per_minute": round(final * 60.0 / seconds, 2) if seconds else None,
        "declines": dict(declines[:TOP_CODES]),
        "declined": sum(count for _, count in declines),
        "refunds": {status: int(count) for status, count in merged.get("refunds", {}).items()},
        "gateway": {
            "calls": sum(c.get("calls", 0) for c in calls.values()),
            "attempts": attempts,
            "retries": sum(c.get("retries", 0) for c in calls.values()),
            "retries_per_payment": round(creating["retries"] / creating["calls"], 3)
            if creating.get("calls") else None,
            "timeouts": timeouts,
            "timeout_rate_pct": _pct(timeouts, attempts),
            "conflicts": answers.get("409", 0),
            "rate_limited": answers.get("429", 0),
            "server_errors": server_errors,
            "answers": answers,
        },
        "latency": {
            "operation": LATENCY_OPERATION,
            "read_timeout_ms": round(bounds[-1] * 1000),
            "le_ms": [round(bound * 1000, 1) for bound in bounds],
            "counts": latency["counts"],
            "count": latency["count"],
            "mean_ms": round(latency["sum"] * 1000 / latency["count"], 1) if latency["count"] else None,
            **{name: _quantile_ms(q, bounds, latency["counts"]) for name, q in QUANTILES.items()},
        },
    }


def histogram_quantile(q: float, bounds: list[float], counts: list[int]) -> float | None:
    """The q-quantile in seconds, interpolated inside its bucket as Prometheus'
    histogram_quantile does; a quantile in the +Inf bucket is the largest finite bound."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank and count:
            if index >= len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]


def _quantile_ms(q: float, bounds: list[float], counts: list[int]) -> float | None:
    value = histogram_quantile(q, bounds, counts)
    return round(value * 1000, 1) if value is not None else None


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _counted(totals: dict[str, Any] | None) -> bool:
    if not totals:
        return False
    return bool(totals.get("payments") or totals.get("refunds") or totals.get("gateway"))


def _difference(current: Any, before: Any) -> Any:
    """current - before, key by key and item by item; None when any count went down."""
    if isinstance(current, dict):
        out = {}
        for key, value in current.items():
            if key == "buckets":
                out[key] = value
                continue
            diff = _difference(value, (before or {}).get(key) if isinstance(before, dict) else None)
            if diff is None and value is not None:
                return None
            out[key] = diff
        return out
    if isinstance(current, list):
        if not isinstance(before, list) or len(before) != len(current):
            return list(current)
        diffs = [_difference(a, b) for a, b in zip(current, before, strict=False)]
        return None if any(d is None for d in diffs) else diffs
    if isinstance(current, (int, float)):
        base = before if isinstance(before, (int, float)) else 0
        # Sums of seconds are rounded when published: a hair below is no restart.
        if current < base - 1e-6:
            return None
        return round(current - base, 6) if isinstance(current, float) or isinstance(base, float) else current - base
    return current


def _sum(a: Any, b: Any) -> Any:
    if isinstance(a, dict) or isinstance(b, dict):
        a, b = a or {}, b or {}
        return {key: _sum(a.get(key), b.get(key)) for key in {*a, *b}}
    if isinstance(a, list) or isinstance(b, list):
        if not a:
            return list(b or [])
        if not b:
            return list(a)
        return [x + y for x, y in zip(a, b, strict=False)]
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def emf_metrics(traffic: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """The interval's figures as CloudWatch metrics (name: (value, unit)), one record per run."""
    payments, gateway, latency = traffic["payments"], traffic["gateway"], traffic["latency"]
    refunds = traffic.get("refunds", {})
    return {
        "Payments": (traffic["total"], "Count"),
        "PaymentsSucceeded": (payments["succeeded"], "Count"),
        "PaymentsFailed": (payments["failed"], "Count"),
        "PaymentsUnknown": (payments["unknown"], "Count"),
        "PaymentsCanceled": (payments["canceled"], "Count"),
        "PaymentsShed": (payments["shed"], "Count"),
        "PaymentsRequiresAction": (payments["requires_action"], "Count"),
        "PaymentSuccessRate": (traffic["success_rate_pct"], "Percent"),
        "PaymentsPerMinute": (traffic["per_minute"], "None"),
        "GatewayAttempts": (gateway["attempts"], "Count"),
        "GatewayRetries": (gateway["retries"], "Count"),
        "GatewayTimeouts": (gateway["timeouts"], "Count"),
        "GatewayTimeoutRate": (gateway["timeout_rate_pct"], "Percent"),
        "GatewayConflicts": (gateway["conflicts"], "Count"),
        "GatewayRateLimited": (gateway["rate_limited"], "Count"),
        "GatewayServerErrors": (gateway["server_errors"], "Count"),
        "GatewayLatencyP50": (latency["p50_ms"], "Milliseconds"),
        "GatewayLatencyP95": (latency["p95_ms"], "Milliseconds"),
        "GatewayLatencyP99": (latency["p99_ms"], "Milliseconds"),
        "RefundsSucceeded": (refunds.get("succeeded", 0), "Count"),
        "RefundsFailed": (refunds.get("failed", 0), "Count"),
        "RefundsUnknown": (refunds.get("unknown", 0), "Count"),
    }
