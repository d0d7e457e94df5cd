"""Payments: how many are in flight, how many sit unsettled past their age limit, and what
the fleet's payments did since the last run (outcomes, declines, gateway latency)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from health.checks.base import Check, Level, Problem, Reading, fleet_view


class PaymentsCheck(Check):
    name = "payments"

    def measure(self) -> Reading:
        from payments.selectors import payment_in_flight_summary, payment_unknown_summary

        max_age = settings.PAYMENT_UNKNOWN_MAX_AGE
        overdue = payment_unknown_summary(older_than=timedelta(seconds=max_age))
        in_flight = payment_in_flight_summary()
        count = sum(row["count"] for row in overdue)
        traffic, totals = _traffic()
        reading = Reading(
            figures={"in_flight": in_flight, "in_use": in_flight["count"], "unknown_overdue": overdue,
                     "errors": count, "traffic": traffic, "traffic_totals": totals},
            message=f"{in_flight['count']} payments in flight; {count} unsettled beyond {max_age} s"
                    + _traffic_message(traffic),
        )
        latency = _latency_level(traffic)
        if latency is not None:
            reading.levels["gateway_latency"] = latency
        if count:
            amounts = ", ".join(f"{row['currency']} {row['amount']}" for row in overdue)
            reading.problems.append(Problem(
                "unknown_overdue", "error",
                f"{count} payments unsettled for more than {max_age} s ({amounts}, minor units)",
            ))
        return reading


def _traffic() -> tuple[dict[str, Any], dict[str, Any]]:
    from health.payment_figures import fleet_totals, interval_figures
    from health.selectors import payment_figures_baseline

    docs, shared = fleet_view()
    baseline = payment_figures_baseline()
    totals = fleet_totals(docs, baseline=baseline)
    traffic = interval_figures(totals=totals, baseline=baseline)
    traffic["shared"] = shared
    return traffic, totals


def _traffic_message(traffic: dict[str, Any]) -> str:
    if not traffic["total"]:
        return ""
    latency = traffic["latency"]
    p95 = f", gateway p95 {latency['p95_ms']:.0f} ms" if latency["p95_ms"] is not None else ""
    return f"; {traffic['total']} payments since the last run, {traffic['success_rate_pct']:.0f}% succeeded{p95}"


def _latency_level(traffic: dict[str, Any]) -> Level | None:
    """The p95 of payment creations against the read timeout, once the interval had enough
    tries to mean something: slow calls are seen while they still succeed."""
    latency = traffic["latency"]
    if latency["p95_ms"] is None or latency["count"] < settings.ALERT_LATENCY_MIN_CALLS:
        return None
    timeout_ms = latency["read_timeout_ms"]
    share = round(100.0 * latency["p95_ms"] / timeout_ms, 1)
    over = f" over {traffic['interval_s']:.0f} s" if traffic.get("interval_s") else ""
    return Level(
        value=share, warning=settings.ALERT_LATENCY_WARNING, error=settings.ALERT_LATENCY_ERROR,
        message=(f"gateway p95 latency {latency['p95_ms']:.0f} ms{over} ({latency['count']} tries), {share:.0f}% "
                 f"of the {timeout_ms} ms read timeout (warning above {settings.ALERT_LATENCY_WARNING}%, "
                 f"error above {settings.ALERT_LATENCY_ERROR}%)"),
    )
