"""CPU cost of the payment figures per payment (payments/figures.py): one gateway call and
one outcome recorded, as GatewayClient._call and the payment outcome writers do, and the
snapshot the publisher takes every HEALTH_PUBLISH_INTERVAL.

    DJANGO_SETTINGS_MODULE=config.settings_test .venv/bin/python bench/figures_cost.py
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

django.setup()

from payments.figures import figures_snapshot, record_gateway_call, record_payment_outcome  # noqa: E402
from payments.gateway.results import Attempt, GatewayResult  # noqa: E402

PAYMENTS = 200_000


def main() -> None:
    result = GatewayResult(outcome="ok", http_status=200,
                           attempts=[Attempt(datetime.now(UTC), 180.0, "ok", 200, "req_1", "")])
    started = time.process_time()
    for _ in range(PAYMENTS):
        record_gateway_call(method="POST", path="/v1/payment_intents", result=result)
        record_payment_outcome(status="succeeded")
    per_payment = (time.process_time() - started) / PAYMENTS
    started = time.process_time()
    for _ in range(2000):
        figures_snapshot()
    per_snapshot = (time.process_time() - started) / 2000
    print(f"recording: {per_payment * 1e6:.2f} µs of CPU per payment; snapshot: {per_snapshot * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
