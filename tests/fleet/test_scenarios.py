"""Bounded versions of fleet scenarios 3 (gateway outage and flapping), 4 (answer lost after
the charge), 6 (Redis down) and 6b (Redis hangs): a real loopback fleet on the pytest test
database.

    DATABASE_TEST_NAME=test_payops_fleet2 REDIS_URL=redis://127.0.0.1:6379/10 \
        .venv/bin/python -m pytest tests/fleet/test_scenarios.py -q
"""

from __future__ import annotations

import pytest

from bench.fleet import common, gateway_outage, lost_answer, redis_down
from tests.fleet.support import database, fleet_args
from tests.payments.factories import make_client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_gateway_outage_and_flapping_open_the_breaker_fleet_wide_and_recover(tmp_path) -> None:
    _, key = make_client()
    with gateway_outage.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = gateway_outage.run(fleet, api_key=key, run_id=common.new_run_id(), clients=3, seconds=28,
                                    first_at=3, outage=7, flaps=2, gap=4)
    print(gateway_outage.report(result))
    assert result.ok, {k: v for k, v in result.checks.items() if not v}


def test_answer_lost_after_charge_under_load_no_duplicates_ledger_equals_gateway(tmp_path) -> None:
    _, key = make_client()
    with lost_answer.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = lost_answer.run(fleet, api_key=key, run_id=common.new_run_id(), clients=3, seconds=12,
                                 probability=0.3)
    print(lost_answer.report(result))
    assert result.ok, {k: v for k, v in result.checks.items() if not v}


def test_redis_down_payments_keep_flowing_and_publishing_resumes(tmp_path) -> None:
    _, key = make_client()
    with redis_down.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = redis_down.run(fleet, api_key=key, run_id=common.new_run_id(), clients=3, seconds=14,
                                outage_at=4, outage=5)
    print(redis_down.report(result))
    failed = {k: v for k, v in result.checks.items() if not v}
    assert not failed, failed


def test_redis_hanging_holds_no_payment_and_every_process_recovers(tmp_path) -> None:
    _, key = make_client()
    with redis_down.fleet_for(database(), **fleet_args(tmp_path)) as fleet:
        result = redis_down.run(fleet, api_key=key, run_id=common.new_run_id(), clients=3, seconds=14,
                                outage_at=4, outage=5, hang=True)
    print(redis_down.report(result))
    failed = {k: v for k, v in result.checks.items() if not v}
    assert not failed, failed
