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
        from payments.selectors import (
            idempotency_mismatch_count,
            payment_in_flight_summary,
            payment_unknown_summary,
            refund_unknown_summary,
            with_display,
        )

        max_age = settings.PAYMENT_UNKNOWN_MAX_AGE
        overdue = with_display(payment_unknown_summary(older_than=timedelta(seconds=max_age)))
        refunds_overdue = with_display(refund_unknown_summary(older_than=timedelta(seconds=max_age)))
        mismatched = idempotency_mismatch_count()
        in_flight = payment_in_flight_summary()
        count = sum(row["count"] for row in overdue)
        refund_count = sum(row["count"] for row in refunds_overdue)
        reading = Reading(
            figures={"in_flight": in_flight, "in_use": in_flight["count"], "unknown_overdue": overdue,
                     "refunds_unknown_overdue": refunds_overdue, "idempotency_mismatch": mismatched,
                     "errors": count + refund_count},
            message=f"{in_flight['count']} payments in flight; {count} payments and {refund_count} refunds "
                    f"unsettled beyond {max_age} s",
        )
        _traffic_add(reading)
        if count:
            amounts = ", ".join(row["display"] for row in overdue)
            reading.problems.append(Problem(
                "unknown_overdue", "error", f"{count} payments unsettled for more than {max_age} s ({amounts})"))
        if refund_count:
            amounts = ", ".join(row["display"] for row in refunds_overdue)
            reading.problems.append(Problem(
                "refunds_unknown_overdue", "error",
                f"{refund_count} refunds unsettled for more than {max_age} s ({amounts})"))
        if mismatched:
            # The gateway saw our key with other parameters: our re-send was not byte-identical.
            reading.problems.append(Problem(
                "idempotency_mismatch", "error",
                f"{mismatched} payments answered 'same idempotency key, other parameters' by the gateway: "
                "they may be charged; settle them by hand"))
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
