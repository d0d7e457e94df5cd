"""Idempotency records are kept 24 hours past their lease (Stripe keeps keys that long), then
pruned in batches: a retry within the window replays, one after it is a new request."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from config import ticks
from config.redis import get_redis
from payments.models import IdempotencyRecord, Payment
from payments.retention import idempotency_records_prune
from payments.tasks import idempotency_records_prune as prune_task
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db


def _record(client, *, age: timedelta, leased_for: timedelta | None = None) -> int:  # type: ignore[no-untyped-def]
    now = timezone.now()
    record = IdempotencyRecord.objects.create(
        client=client, key=uuid.uuid4().hex, endpoint="payments.create", request_hash="0" * 64,
        response_status=201, response_body={"id": "pay_x"},
        locked_until=now - age + leased_for if leased_for is not None else None,
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(created=now - age)  # auto_now_add
    return record.pk


@pytest.fixture
def api_client():  # type: ignore[no-untyped-def]
    client, _ = make_client()
    return client


def test_records_older_than_the_replay_window_go_in_batches_and_younger_ones_stay(api_client) -> None:
    old = [_record(api_client, age=timedelta(hours=25)) for _ in range(12)]
    young = [_record(api_client, age=timedelta(hours=23)) for _ in range(3)]

    assert idempotency_records_prune(batch=5) == len(old)
    assert sorted(IdempotencyRecord.objects.values_list("pk", flat=True)) == sorted(young)


def test_a_record_whose_lease_ended_within_the_window_stays(api_client) -> None:
    # Created 30 h ago, but a request held its key until 20 h ago: 24 h past the lease is 4 h away.
    held = _record(api_client, age=timedelta(hours=30), leased_for=timedelta(hours=10))
    expired = _record(api_client, age=timedelta(hours=30), leased_for=timedelta(seconds=30))

    assert idempotency_records_prune() == 1
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [held]
    assert not IdempotencyRecord.objects.filter(pk=expired).exists()


@pytest.fixture
def fresh_prune_ticks():  # type: ignore[no-untyped-def]
    yield
    for key in get_redis().scan_iter("payops:payments:prune:tick:*"):
        get_redis().delete(key)


def test_a_retry_within_the_window_replays_and_one_after_the_prune_is_refused_not_charged_again(gateway) -> None:
    _, key = make_client()
    api = Api(key)
    first = api.pay(idempotency_key="order-1")
    assert first.status_code == 201
    assert api.pay(idempotency_key="order-1").json()["id"] == first.json()["id"]
    assert idempotency_records_prune() == 0

    IdempotencyRecord.objects.update(created=timezone.now() - timedelta(hours=25))
    assert idempotency_records_prune() == 1
    # Stripe would charge anew; our payment keeps its key, so the client is told to use a new one.
    again = api.pay(idempotency_key="order-1")
    assert again.status_code == 409 and again.json()["error"]["code"] == "idempotency_key_expired"
    assert Payment.objects.count() == 1
    refund = api.http.post(f"/api/v1/payments/{first.json()['id']}/refunds", {"amount": 100},
                           content_type="application/json", **api.headers("refund-1"))
    assert refund.status_code == 201, refund.content
    IdempotencyRecord.objects.update(created=timezone.now() - timedelta(hours=25))
    assert idempotency_records_prune() == 1
    refund_again = api.http.post(f"/api/v1/payments/{first.json()['id']}/refunds", {"amount": 100},
                                 content_type="application/json", **api.headers("refund-1"))
    assert refund_again.status_code == 409 and refund_again.json()["error"]["code"] == "idempotency_key_expired"


def test_beat_prunes_once_per_tick(api_client, fresh_prune_ticks) -> None:
    _record(api_client, age=timedelta(days=3))
    headers = ticks.beat_headers("idempotency-prune", 60.0)
    first = prune_task.apply(headers=headers, task_id=str(uuid.uuid4())).get()
    second = prune_task.apply(headers=headers, task_id=str(uuid.uuid4())).get()
    assert (first, second) == (1, 0)
    assert not IdempotencyRecord.objects.exists()
