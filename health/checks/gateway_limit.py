"""The gateway concurrency limit of every process (payments.gateway.limiter), read with the
payment gateway's pools: how far a slow gateway has brought it down and what it refused."""

from __future__ import annotations

from typing import Any

from health.checks.base import Problem


def limit_figures(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Problem]]:
    """Fleet figures of the limit and the problems they show; empty before any gateway call."""
    limits = [(doc["process"], doc["gateway_limit"]) for doc in docs if doc.get("gateway_limit")]
    if not limits:
        return {}, []
    recent = [stats.get("recent", {}) for _, stats in limits]
    calls = sum(int(r.get("calls", 0)) for r in recent)
    shed = sum(int(r.get("shed", 0)) for r in recent)
    slow = sum(int(r.get("slow", 0)) for r in recent)
    lowest_process, lowest = min(limits, key=lambda item: item[1]["limit"] / max(1, item[1]["max"]))
    figures: dict[str, Any] = {
        "limit": sum(stats["limit"] for _, stats in limits),
        "limit_max": sum(stats["max"] for _, stats in limits),
        "in_flight": sum(stats["in_flight"] for _, stats in limits),
        "calls": calls,
        "shed": shed,
        "slow_calls": slow,
        "latency_ms": max(float(stats.get("latency_ms") or 0) for _, stats in limits),
        "lowest_limit": f"{lowest_process} {lowest['limit']} of {lowest['max']}",
    }
    problems = []
    if slow:
        problems.append(Problem(
            "slow_calls", "warning",
            f"{slow} of {calls} gateway calls succeeded slower than {lowest.get('slow_call_ms', 0)} ms recently; "
            f"the concurrency limit is {figures['limit']} of {figures['limit_max']} calls "
            f"(lowest {figures['lowest_limit']})",
        ))
    if shed:
        problems.append(Problem(
            "gateway_saturated", "warning",
            f"{shed} gateway calls were refused at once (503 gateway_saturated, nothing sent) recently: "
            f"{figures['in_flight']} in flight against a limit of {figures['limit']}",
        ))
    return figures, problems
