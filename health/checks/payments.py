"""Payments: how many are in flight, and how many sit unsettled past their age limit."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from health.checks.base import Check, Problem, Reading


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
