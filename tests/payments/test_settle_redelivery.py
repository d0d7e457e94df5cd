"""Settlement when a worker died mid-call, and the sweep under two beats: a redelivered settlement
that finds the payment still claimed looks again once the claim is stale; beat's sweep runs once
per tick, a sweep sent by hand always runs."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from config import ticks
from config.redis import get_redis
from payments.models import Payment
from payments.tasks import SWEEP_SCOPE, payment_settle_sweep, payment_settle_task
from tests.payments.factories import make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_sweep_ticks():
    yield
    for key in get_redis().scan_iter(f"payops:{SWEEP_SCOPE}:tick:*"):
        get_redis().delete(key)


def _payment(**fields) -> Payment:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    return Payment.objects.create(client=client, idempotency_key=uuid.uuid4().hex, request_hash="x", amount=1000,
                                  currency="usd", payment_method="pm_card_visa", **fields)


def test_a_settlement_finding_a_fresh_claim_looks_again_when_it_goes_stale(settings, monkeypatch) -> None:
    # A worker was killed while its call was at the gateway: the payment stays claimed.
    payment = _payment(status="processing")
    Payment.objects.filter(pk=payment.pk).update(updated=timezone.now() - timedelta(seconds=4))
    asked: dict[str, float] = {}

    def retry(**options: float) -> Retry:
        asked.update(options)
        return Retry(when=options["countdown"])

    monkeypatch.setattr(payment_settle_task, "retry", retry)
    with pytest.raises(Retry):
        payment_settle_task.run(payment.id)
    assert settings.PAYMENT_CLAIM_STALE_AFTER - 4 <= asked["countdown"] <= settings.PAYMENT_CLAIM_STALE_AFTER - 2
    assert Payment.objects.get(pk=payment.pk).status == "processing"  # nobody sent it twice meanwhile


def test_beats_sweep_runs_once_per_tick_a_sweep_by_hand_always(caplog) -> None:
    caplog.set_level(logging.INFO)
    _payment(status="unknown", next_settle_at=timezone.now() + timedelta(hours=1))
    headers = ticks.beat_headers("payment-settle-sweep", 60)
    first = payment_settle_sweep.apply(headers=headers, task_id="beat-1").get()
    copy = payment_settle_sweep.apply(headers=headers, task_id="beat-2").get()
    again = payment_settle_sweep.apply(headers=headers, task_id="beat-1").get()  # its redelivery
    by_hand = [payment_settle_sweep.apply().get() for _ in range(2)]
    assert "queued" in first and copy == {"queued": 0, "expired": 0}
    assert again == first and by_hand == [first, first]
    skipped = [r for r in caplog.records if getattr(r, "category", "") == "tick_skipped"]
    assert len(skipped) == 1 and skipped[0].scope == SWEEP_SCOPE
