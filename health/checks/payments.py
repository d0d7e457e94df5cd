"""Payments: how many are in flight, and how many sit unsettled past their age limit."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from health.checks.base import Check, Problem, Reading


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
        if count:
            amounts = ", ".join(f"{row['currency']} {row['amount']}" for row in overdue)
            reading.problems.append(Problem(
                "unknown_overdue", "error",
                f"{count} payments unsettled for more than {max_age} s ({amounts}, minor units)",
            ))
        return reading
