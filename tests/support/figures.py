"""Payments through the API whose outcome the payment figures count exactly once.

payments/services/recording.py counts each payment's answer when its write commits; inside a test case's
transaction (no commit, so no on_commit callbacks) nothing is counted, and this helper counts
the answer the API gave instead. Either way the tests' tallies hold."""

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
