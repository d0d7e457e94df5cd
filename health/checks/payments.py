"""Payments: how many are in flight, how many sit unsettled past their age limit, and what
the fleet's payments did since the last run (outcomes, declines, gateway latency)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from health.checks import payment_traffic
from health.checks.base import Check, Problem, Reading, fleet_view


class PaymentsCheck(Check):
    name = "payments"

    def measure(self) -> Reading:
        from payments.selectors import payment_in_flight_summary, payment_unknown_summary

        max_age = settings.PAYMENT_UNKNOWN_MAX_AGE
        overdue = payment_unknown_summary(older_than=timedelta(seconds=max_age))
        in_flight = payment_in_flight_summary()
        count = sum(row["count"] for row in overdue)
        reading = Reading(
            figures={"in_flight": in_flight, "in_use": in_flight["count"], "unknown_overdue": overdue,
                     "errors": count},
            message=f"{in_flight['count']} payments in flight; {count} unsettled beyond {max_age} s",
        )
        _traffic_add(reading)
        if count:
            amounts = ", ".join(f"{row['currency']} {row['amount']}" for row in overdue)
            reading.problems.append(Problem(
                "unknown_overdue", "error",
                f"{count} payments unsettled for more than {max_age} s ({amounts}, minor units)",
            ))
        return reading


def _traffic_add(reading: Reading) -> None:
    """What the fleet's payments did since the last run, with the totals the next run
    subtracts, and what those figures say is wrong."""
    from health.payment_figures import fleet_totals, interval_figures
    from health.selectors import payment_figures_baseline

    docs, shared = fleet_view()
    baseline = payment_figures_baseline()
    totals = fleet_totals(docs, baseline=baseline)
    traffic = interval_figures(totals=totals, baseline=baseline)
    traffic["shared"] = shared
    reading.figures.update(traffic=traffic, traffic_totals=totals)
    reading.message += _traffic_message(traffic)
    _judge(reading, traffic)


def _traffic_message(traffic: dict[str, Any]) -> str:
    if not traffic["total"]:
        return ""
    latency = traffic["latency"]
    p95 = f", gateway p95 {latency['p95_ms']:.0f} ms" if latency["p95_ms"] is not None else ""
    return f"; {traffic['total']} payments since the last run, {traffic['success_rate_pct']:.0f}% succeeded{p95}"


def _judge(reading: Reading, traffic: dict[str, Any]) -> None:
    from health.selectors import payment_figures_recent

    for condition, level in (("gateway_latency", payment_traffic.latency_level(traffic)),
                             ("gateway_timeouts", payment_traffic.timeout_level(traffic))):
        if level is not None:
            reading.levels[condition] = level
    if not traffic["total"]:
        return
    # The stored intervals before this one (this run's reading is not stored yet).
    hour = payment_figures_recent(runs=payment_traffic.baseline_runs())
    for problem in (payment_traffic.success_drop(traffic, hour), payment_traffic.decline_spike(traffic, hour)):
        if problem is not None:
            reading.problems.append(problem)
