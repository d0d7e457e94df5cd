"""Bounded versions of fleet scenario 7: a threads-pool worker killed with -9 during a health
run and during settlement (bench/fleet/worker_kill.py), and two beats at once
(bench/fleet/two_beats.py), on a real loopback fleet and the pytest test database.

    DATABASE_TEST_NAME=test_payops_h7 REDIS_URL=redis://127.0.0.1:6379/12 \
        .venv/bin/python -m pytest tests/fleet/test_redelivery.py -q
"""

from __future__ import annotations

import pytest

from bench.fleet import common, two_beats, worker_kill
from tests.fleet.support import database, fleet_args
from tests.payments.factories import make_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_worker_killed_mid_health_run_and_mid_settlement_the_redelivery_finishes_once(tmp_path) -> None:
    _, key = make_client()
    with worker_kill.fleet_for(database(), visibility=20, **fleet_args(tmp_path)) as fleet:
        result = worker_kill.run(fleet, api_key=key, run_id=common.new_run_id(), rounds=1, payments=4,
                                 visibility=20)
    print(worker_kill.report(result))
    assert result.ok, {k: v for k, v in result.checks.items() if not v}


def test_two_beats_at_once_no_tick_runs_twice_and_none_is_missing(tmp_path) -> None:
    with two_beats.fleet_for(database(), interval=4, sweep_interval=8, **fleet_args(tmp_path)) as fleet:
        result = two_beats.run(fleet, seconds=30, interval=4, sweep_interval=8, stagger=1.5)
    print(two_beats.report(result))
    assert result.ok, {k: v for k, v in result.checks.items() if not v}
