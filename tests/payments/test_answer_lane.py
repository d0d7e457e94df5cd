"""Gateway answers are recorded through their own small pool, never behind new requests."""

from __future__ import annotations

import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from payments.gateway.results import Attempt
from payments.models import Payment
from payments.services import create_path_sql
from tests.payments.factories import make_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_answer_is_recorded_while_every_pooled_connection_is_taken() -> None:
    client, _ = make_client()
    payment = Payment.objects.create(client=client, idempotency_key="lane-1", request_hash="h", amount=700,
                                     currency="usd", payment_method="pm_card_visa", status="processing")
    connection.close()
    pool = connections["default"].pool
    held = [pool.getconn() for _ in range(pool.max_size)]  # the main pool is exhausted (timeout 30 s)
    try:
        started = time.monotonic()
        applied = create_path_sql.payment_apply_first(
            payment_id=payment.pk,
            fields={"status": "succeeded", "failure_code": "", "failure_message": "", "attempt_count": 1,
                    "updated": timezone.now(), "gateway_id": "pi_lane_1", "next_settle_at": None},
            attempts=[Attempt(started_at=timezone.now(), duration_ms=12.5, outcome="ok", http_status=200,
                              request_id="req_1", error="")],
        )
        took = time.monotonic() - started
    finally:
        for conn in held:
            pool.putconn(conn)
    assert applied and took < 2, took
    payment.refresh_from_db()
    assert (payment.status, payment.gateway_id, payment.attempt_count) == ("succeeded", "pi_lane_1", 1)
    assert payment.attempts.get().gateway_request_id == "req_1"


def test_an_answer_for_a_payment_that_moved_on_is_not_written() -> None:
    client, _ = make_client()
    payment = Payment.objects.create(client=client, idempotency_key="lane-2", request_hash="h", amount=700,
                                     currency="usd", payment_method="pm_card_visa", status="unknown")
    applied = create_path_sql.payment_apply_first(
        payment_id=payment.pk,
        fields={"status": "failed", "failure_code": "card_declined", "failure_message": "", "attempt_count": 1,
                "updated": timezone.now(), "next_settle_at": None},
        attempts=[Attempt(started_at=timezone.now(), duration_ms=3.0, outcome="declined", http_status=402,
                          request_id="req_2", error="")],
    )
    assert not applied
    payment.refresh_from_db()
    assert payment.status == "unknown" and not payment.attempts.exists()
