"""Bounded scenario 8 (a slow gateway under open-loop load): the Procfile's fleet on the
pytest test database, one overloaded cell.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/payops_s REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python -m pytest tests/fleet/test_slow_gateway.py -q
"""

from __future__ import annotations

import pytest

from bench.fleet import common, slow_gateway
from tests.fleet.support import database, fleet_args
from tests.payments.factories import make_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_slow_gateway_at_three_times_capacity_sheds_fast_and_probes_never_fail(tmp_path) -> None:
    _, key = make_client()
    with slow_gateway.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = slow_gateway.run(fleet, api_key=key, run_id=common.new_run_id(), latencies=[2.0], loads=[3.0],
                                  seconds=8)
    print(slow_gateway.report(result))
    (cell,) = result.cells
    checks = cell.checks()
    # What a client and an operator notice; the p99 figures are the full run's business (a
    # shared CI machine's CPU is not this test's to judge).
    assert checks["0 answers 500"] and checks["every 503 with Retry-After"], checks
    assert checks["every client answered within PAYMENT_DEADLINE + 2 s"], common.status_counts(cell.hits)
    assert all(cell.longest_failed_run(path) == 0 for path in slow_gateway.PROBES), [
        p for p in cell.probes if not p.ok][:5]
    saturated = [h for h in cell.answered(503) if h.code == "gateway_saturated"]
    assert saturated and common.pct([h.elapsed for h in saturated], 50) < 0.5  # refused at once
    # A guard against collapse, not the target (≥ 90 %, missed: 50–95 % measured, most
    # connections land on one worker; docs/reliability.md, scenario 8). CI measured 65 % here.
    assert cell.completed_per_s >= 0.5 * cell.capacity, slow_gateway.cell_row(cell)
    assert common.ledger_ok(result.ledger), result.ledger
