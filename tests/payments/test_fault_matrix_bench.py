"""A bounded slice of bench/fault_matrix.py: three representative fault kinds against a real
loopback fleet (gunicorn, a Celery worker, the sandbox in front of localstripe) on the
pytest test database. `slow`: the gateway still runs the first try when the retry comes
(409); `unauthorized`: the gateway refuses our key (nothing charged, the client retries);
`lose_answer`: the gateway charged and the answer was lost.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/payops_x REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python -m pytest tests/payments/test_fault_matrix_bench.py -q
"""

from __future__ import annotations

import pytest

from bench import fault_matrix
from bench.fleet.common import Hit
from tests.fleet.support import database, fleet_args
from tests.payments.factories import make_client

KINDS = ["slow", "unauthorized", "lose_answer"]


def _row(**ledger: object) -> fault_matrix.Row:
    clean = {"statuses": {"succeeded": 1}, "duplicates": [], "orphans": [], "answered_missing": [],
             "unsettled": [], "pending_charged": [], "failed_charged": [], "succeeded_mismatch": [],
             "ledger_total": 1000, "gateway_total": 1000}
    run = fault_matrix.PaymentRun(key="k" * 32, hits=[Hit("pay", 0.0, 0.1, 201)])
    return fault_matrix.Row(kind="slow", runs=[run], ledger={**clean, **ledger}, unsettled=[], seconds=1.0, fired=1)


def test_the_matrix_names_each_broken_invariant() -> None:
    assert _row().violations() == {}
    assert set(_row(failed_charged=["pay_1"], duplicates=["pay_2"], unsettled=["pay_3"],
                    gateway_total=2000).violations()) == {
        "failed but charged", "duplicate charges", "left unknown/processing", "ledger total != gateway total"}
    five_hundred = _row()
    five_hundred.runs[0].hits.insert(0, Hit("pay", 0.0, 0.1, 500))
    assert set(five_hundred.violations()) == {"answers 500"}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_payment_ends_in_the_gateways_truth_under_three_fault_kinds(tmp_path, worker) -> None:
    # `worker`: the session's own Celery worker runs beside the fleet, as in the whole suite.
    _, key = make_client()
    # 0.75: a row whose fault never fired (0.25**8 at worst) would prove nothing.
    opts = fault_matrix.Options(payments=8, probability=0.75)
    with fault_matrix.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        rows = fault_matrix.run_matrix(fleet, api_key=key, kinds=KINDS, opts=opts)
    print(fault_matrix.table(rows))
    # pytest shortens the assertion's repr: the whole finding goes to the captured output.
    print(fault_matrix.violations(rows))
    assert [row.kind for row in rows] == KINDS
    # Each fault really met these payments, or the row proved nothing.
    assert all(row.fired > 0 for row in rows), {row.kind: row.fired for row in rows}
    assert all(len(row.runs) == opts.payments and row.ledger["payments"] == opts.payments for row in rows)
    assert not fault_matrix.violations(rows), fault_matrix.violations(rows)
