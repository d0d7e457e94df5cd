"""POST /webhooks/gateway: only the gateway's signed events are taken, each stored once before
anything acts on it; processing applies an event at most once, through the payment's (or
refund's) reconciliation with the gateway. Real deliveries from localstripe are in
test_webhooks_e2e.py."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from config import ticks
from config.redis import get_redis
from payments.models import GatewayEvent, Payment, Refund
from payments.services import refunds as refund_services
from payments.webhooks import services
from payments.webhooks.refusals import refusals_key
from payments.webhooks.tasks import SWEEP_SCOPE, gateway_event_process_task, gateway_event_sweep
from tests.payments.events import SECRET, URL, deliver, make_event, signature_for
from tests.payments.factories import make_client

pytestmark = pytest.mark.django_db


def today() -> str:
    return refusals_key(datetime.now(UTC).date())


@pytest.fixture(autouse=True)
def _secret(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENT_GATEWAY_WEBHOOK_SECRET = SECRET
    get_redis().delete(today())


@pytest.fixture
def queued(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Events handed to the broker (recorded here instead)."""
    pks: list[int] = []
    monkeypatch.setattr(services, "_queue", pks.append)
    return pks


@pytest.fixture
def reconciled(monkeypatch) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Stands in for the payment's and refund's reconciliation with the gateway (the real one,
    asking localstripe, runs in test_webhooks_e2e.py): moves the payment to `succeeded`."""
    calls: list[dict[str, Any]] = []

    def payment_reconcile(*, payment_id: str, gateway_id: str | None = None) -> Payment:
        calls.append({"payment_id": payment_id, "gateway_id": gateway_id})
        Payment.objects.filter(pk=payment_id).update(status="succeeded", gateway_id=gateway_id)
        return Payment.objects.get(pk=payment_id)

    def refund_reconcile(*, refund_id: str) -> Refund:
        calls.append({"refund_id": refund_id})
        Refund.objects.filter(pk=refund_id).update(status="succeeded")
        return Refund.objects.get(pk=refund_id)

    monkeypatch.setattr(services, "payment_reconcile", payment_reconcile)
    monkeypatch.setattr(refund_services, "refund_reconcile", refund_reconcile)
    return calls


def _payment(**fields: Any) -> Payment:
    client, _ = make_client()
    return Payment.objects.create(client=client, idempotency_key=uuid.uuid4().hex, request_hash="x", amount=1000,
                                  currency="usd", payment_method="pm_card_visa", **fields)


def _refund(payment: Payment, **fields: Any) -> Refund:
    return Refund.objects.create(payment=payment, client=payment.client, idempotency_key=uuid.uuid4().hex,
                                 request_hash="x", amount=400, **fields)


def _intent(intent_id: str, status: str = "succeeded", **metadata: str) -> dict[str, Any]:
    return {"id": intent_id, "object": "payment_intent", "status": status, "metadata": metadata}


# --- Receipt -------------------------------------------------------------------------------
def test_a_signed_event_is_stored_as_sent_answered_200_and_queued_after_commit(
        client, queued, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    event = make_event(obj=_intent("pi_stored1"))
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, event)
    assert response.status_code == 200 and response.json() == {"received": True}
    stored = GatewayEvent.objects.get()
    assert (stored.event_id, stored.type, stored.object_id, stored.status) == (
        event["id"], "payment_intent.succeeded", "pi_stored1", "received")
    assert stored.payload == event and stored.gateway_created.timestamp() == event["created"]
    assert queued == [stored.pk]


def test_a_repeated_delivery_stores_nothing_more_and_is_answered_200(
        client, queued, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    event = make_event(obj=_intent("pi_twice"))
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(client, event)
        again = deliver(client, event)  # still waiting for a worker: queued once more, harmless
    services.gateway_event_process(pk=GatewayEvent.objects.get().pk)  # not ours: ignored
    with django_capture_on_commit_callbacks(execute=True):
        late = deliver(client, event, at=int(time.time()) + 5)  # signed anew, as the gateway's retries are
    assert [r.status_code for r in (first, again, late)] == [200, 200, 200]
    assert late.json() == {"received": True}
    stored = GatewayEvent.objects.get()
    assert len(queued) == 2 and set(queued) == {stored.pk}  # nothing queued once processed
    assert stored.status == "ignored" and stored.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_event_store_it_once_and_all_get_200(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    sent: list[int] = []
    monkeypatch.setattr(services, "_queue", sent.append)
    event = make_event(obj=_intent("pi_concurrent"))
    start = threading.Barrier(6)
    answers: list[int] = []

    def send() -> None:
        start.wait()
        try:
            answers.append(deliver(Client(), event).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 6
    stored = GatewayEvent.objects.get()
    assert stored.event_id == event["id"] and set(sent) == {stored.pk}


def test_several_v1_signatures_one_of_them_ours_are_accepted(client, queued) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(make_event()).encode()
    ours = signature_for(body).split(",")[1]
    theirs = signature_for(body, secret="whsec_rolled_away_0123456789").split(",")[1]
    response = deliver(client, body, signature=f"t={int(time.time())},{theirs},{ours},v0=abc")
    assert response.status_code == 200 and GatewayEvent.objects.count() == 1


def _refusals() -> dict[str, int]:
    return {k.decode(): int(v) for k, v in get_redis().hgetall(today()).items()}


REFUSALS: dict[str, tuple[Callable[[bytes], dict[str, Any]], str, str | None]] = {
    # name: (how the request is sent, reason code, param)
    "no signature": (lambda body: {"event": body, "signature": None}, "signature_missing", "Stripe-Signature"),
    "no timestamp": (lambda body: {"event": body, "signature": "v1=" + "0" * 64}, "signature_malformed",
                     "Stripe-Signature"),
    "another secret": (lambda body: {"event": body, "secret": "whsec_not_the_gateways_0123"}, "signature_invalid",
                       "Stripe-Signature"),
    "body changed after signing": (
        lambda body: {"event": body.replace(b"succeeded", b"failed!!!"), "signature": signature_for(body)},
        "signature_invalid", "Stripe-Signature"),
    "signed 301 s ago": (lambda body: {"event": body, "at": int(time.time()) - 301}, "timestamp_outside_tolerance",
                         "Stripe-Signature"),
    "signed an hour ahead": (lambda body: {"event": body, "at": int(time.time()) + 3600},
                             "timestamp_outside_tolerance", "Stripe-Signature"),
    "not JSON": (lambda body: {"event": body[:-5]}, "payload_invalid", None),
    "not an event": (lambda body: {"event": b'{"id": "evt_x", "data": {}}'}, "payload_invalid", None),
    "a JSON array": (lambda body: {"event": b"[1, 2]"}, "payload_invalid", None),
    "a NUL jsonb refuses": (lambda body: {"event": body.replace(b'"object": "event"', b'"object": "ev\\u0000t"')},
                            "payload_invalid", None),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_is_a_400_with_its_reason_nothing_stored_and_counted(
        client, queued, caplog, case: str) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    make, code, param = REFUSALS[case]
    body = json.dumps(make_event(), indent=2, sort_keys=True).encode()
    response = deliver(client, **make(body))
    assert response.status_code == 400, response.content
    assert response.json() == {"error": {"type": "invalid_request_error", "code": code,
                                         "message": response.json()["error"]["message"], "param": param}}
    assert GatewayEvent.objects.count() == 0 and queued == []
    assert _refusals() == {code: 1}
    logged = [r for r in caplog.records if getattr(r, "category", "") == "gateway_event_refused"]
    assert [r.reason for r in logged] == [code]
    # Neither the body nor the secret nor the signature reaches the logs.
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert SECRET not in text and "evt_" not in text and "v1=" not in text


def test_a_body_larger_than_any_event_is_refused_unread(client, settings, queued) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    event = make_event(obj={**_intent("pi_huge"), "description": "x" * 70_000})
    response = deliver(client, event)
    assert response.status_code == 400 and response.json()["error"]["code"] == "payload_too_large"
    assert GatewayEvent.objects.count() == 0 and queued == [] and _refusals() == {"payload_too_large": 1}


def test_a_refusal_while_redis_is_away_is_still_a_400_and_counted_by_the_process(client, monkeypatch, queued) -> None:  # type: ignore[no-untyped-def]
    from payments.webhooks import refusals

    def away() -> Any:
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(refusals, "get_redis", away)
    before = refusals.refusals_read()[0].get("signature_missing", 0)
    assert deliver(client, make_event(), signature=None).status_code == 400
    counts, fleet = refusals.refusals_read()
    assert fleet is False and counts["signature_missing"] == before + 1


def test_without_a_signing_secret_every_event_is_refused_with_503(client, settings, queued) -> None:  # type: ignore[no-untyped-def]
    settings.PAYMENT_GATEWAY_WEBHOOK_SECRET = ""
    response = deliver(client, make_event())  # signed with the secret the gateway has
    assert response.status_code == 503 and int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "webhooks_not_configured"
    assert set(response.json()["error"]) == {"type", "code", "message", "param"}
    assert GatewayEvent.objects.count() == 0 and queued == []


def test_only_post_is_answered(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get(URL)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_a_broker_that_is_away_still_gets_the_event_stored_and_200(
        client, monkeypatch, caplog, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    def away(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(gateway_event_process_task, "apply_async", away)
    with django_capture_on_commit_callbacks(execute=True):
        response = deliver(client, make_event())
    assert response.status_code == 200
    stored = GatewayEvent.objects.get()
    assert stored.status == "received"
    assert any(getattr(r, "category", "") == "gateway_event_queue_error" for r in caplog.records)
    # The sweep queues it once it has waited past the grace period.
    GatewayEvent.objects.filter(pk=stored.pk).update(received_at=timezone.now() - timedelta(minutes=2))
    sent: list[tuple] = []
    monkeypatch.setattr(gateway_event_process_task, "apply_async", lambda args, **kw: sent.append(args))
    assert services.gateway_event_queue_due() == 1 and sent == [(stored.pk,)]


# --- Processing ----------------------------------------------------------------------------
def _stored(event: dict[str, Any]) -> GatewayEvent:
    receipt = services.gateway_event_receive(payload=json.dumps(event).encode(),
                                             signature=signature_for(json.dumps(event).encode()))
    return GatewayEvent.objects.get(pk=receipt.pk)


def test_an_event_for_an_intent_that_is_not_ours_is_kept_and_ignored(queued, reconciled) -> None:  # type: ignore[no-untyped-def]
    other = _payment(gateway_id="pi_someone_elses_b")
    event = _stored(make_event(obj=_intent("pi_not_ours", payment_id=other.id)))  # names a payment with another intent
    gateway_event_process_task.run(event.pk)
    event.refresh_from_db()
    assert event.status == "ignored" and "unknown intent pi_not_ours" in event.action
    assert reconciled == [] and event.processed_at is not None


def test_an_event_type_we_do_not_act_on_is_kept_and_ignored(queued, reconciled) -> None:  # type: ignore[no-untyped-def]
    event = _stored(make_event("customer.created", obj={"id": "cus_1", "object": "customer"}))
    gateway_event_process_task.run(event.pk)
    event.refresh_from_db()
    assert (event.status, event.object_id) == ("ignored", "cus_1") and reconciled == []


def test_an_intent_event_reconciles_our_payment_found_by_gateway_id_or_by_its_metadata(queued, reconciled) -> None:  # type: ignore[no-untyped-def]
    known = _payment(status="requires_action", gateway_id="pi_known_1")
    answer_lost = _payment(status="unknown")  # the gateway's answer never reached us: no gateway id
    first = _stored(make_event(obj=_intent("pi_known_1")))
    second = _stored(make_event(obj=_intent("pi_lost_1", payment_id=answer_lost.id)))
    for event in (first, second):
        gateway_event_process_task.run(event.pk)
        event.refresh_from_db()
    assert reconciled == [{"payment_id": known.id, "gateway_id": "pi_known_1"},
                          {"payment_id": answer_lost.id, "gateway_id": "pi_lost_1"}]
    assert (first.status, first.action) == ("processed", f"payment {known.id}: requires_action -> succeeded")
    assert (second.status, second.action) == ("processed", f"payment {answer_lost.id}: unknown -> succeeded")


def test_refund_events_reconcile_our_refunds(queued, reconciled) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(status="succeeded", gateway_id="pi_refunded_1")
    by_id = _refund(payment, status="unknown", gateway_id="re_1")
    by_metadata = _refund(payment, status="unknown")
    unlisted = _refund(payment, status="pending")
    events = [
        _stored(make_event("refund.updated", obj={"id": "re_1", "object": "refund", "metadata": {}})),
        _stored(make_event("charge.refunded", obj={
            "id": "ch_1", "object": "charge", "payment_intent": "pi_refunded_1",
            "refunds": {"data": [{"id": "re_2", "object": "refund", "metadata": {"refund_id": by_metadata.id}}]}})),
        # Recent API versions list no refunds on the charge: the payment's unfinished ones are asked about.
        _stored(make_event("charge.refunded", obj={"id": "ch_1", "object": "charge",
                                                   "payment_intent": "pi_refunded_1"})),
        _stored(make_event("refund.updated", obj={"id": "re_nobody", "object": "refund", "metadata": {}})),
    ]
    for event in events:
        gateway_event_process_task.run(event.pk)
        event.refresh_from_db()
    assert reconciled == [{"refund_id": by_id.id}, {"refund_id": by_metadata.id}, {"refund_id": unlisted.id}]
    assert [e.status for e in events] == ["processed", "processed", "processed", "ignored"]
    assert events[0].action == f"refund {by_id.id}: unknown -> succeeded"


def test_a_task_delivered_again_after_processing_applies_nothing(queued, reconciled) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(status="requires_action", gateway_id="pi_once_1")
    event = _stored(make_event(obj=_intent("pi_once_1")))
    gateway_event_process_task.run(event.pk)
    gateway_event_process_task.run(event.pk)  # acks_late: the same message again
    event.refresh_from_db()
    assert len(reconciled) == 1 and event.attempts == 1
    assert event.action == f"payment {payment.id}: requires_action -> succeeded"


def test_a_failure_is_recorded_and_process_again_applies_it(queued, monkeypatch, caplog,
                                                            django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    payment = _payment(status="requires_action", gateway_id="pi_fails_1")
    event = _stored(make_event(obj=_intent("pi_fails_1")))

    def broken(**kwargs: Any) -> Payment:
        raise RuntimeError("the gateway's answer could not be read")

    monkeypatch.setattr(services, "payment_reconcile", broken)
    gateway_event_process_task.run(event.pk)
    event.refresh_from_db()
    assert event.status == "failed" and event.error == "RuntimeError: the gateway's answer could not be read"
    assert any(getattr(r, "category", "") == "gateway_event_failed" for r in caplog.records)

    def fixed(*, payment_id: str, gateway_id: str | None = None) -> Payment:
        Payment.objects.filter(pk=payment_id).update(status="succeeded")
        return Payment.objects.get(pk=payment_id)

    monkeypatch.setattr(services, "payment_reconcile", fixed)
    with django_capture_on_commit_callbacks(execute=True):
        again = services.gateway_event_requeue(pks=[event.pk])
    assert [e.pk for e in again] == [event.pk] and queued[-1] == event.pk
    gateway_event_process_task.run(event.pk)
    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == ("processed", "", 2)
    assert event.action == f"payment {payment.id}: requires_action -> succeeded"
    # A processed event is not processed again by hand: its outcome is already applied.
    assert services.gateway_event_requeue(pks=[event.pk]) == []


def test_a_claim_left_by_a_dead_worker_is_taken_over_only_once_stale(queued, reconciled, settings) -> None:  # type: ignore[no-untyped-def]
    _payment(status="requires_action", gateway_id="pi_claimed_1")
    event = _stored(make_event(obj=_intent("pi_claimed_1")))
    GatewayEvent.objects.filter(pk=event.pk).update(status="processing", claimed_at=timezone.now(), attempts=1)
    assert services.gateway_event_process(pk=event.pk) is None and reconciled == []  # someone is on it
    stale = timezone.now() - timedelta(seconds=settings.PAYMENT_CLAIM_STALE_AFTER + 1)
    GatewayEvent.objects.filter(pk=event.pk).update(claimed_at=stale)
    assert services.gateway_event_queue_due() == 1 and queued[-1] == event.pk
    assert services.gateway_event_process(pk=event.pk).status == "processed" and len(reconciled) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_apply_an_event_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(services, "_queue", lambda pk: None)
    payment = _payment(status="requires_action", gateway_id="pi_race_1")
    event = _stored(make_event(obj=_intent("pi_race_1")))
    calls: list[str] = []

    def slow(*, payment_id: str, gateway_id: str | None = None) -> Payment:
        calls.append(payment_id)
        time.sleep(0.3)  # the other workers arrive while the gateway is being asked
        return Payment.objects.get(pk=payment_id)

    monkeypatch.setattr(services, "payment_reconcile", slow)
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        try:
            services.gateway_event_process(pk=event.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [payment.id]
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)


def test_beats_sweep_queues_events_left_unqueued_once_per_tick(settings, queued) -> None:  # type: ignore[no-untyped-def]
    entry = settings.CELERY_BEAT_SCHEDULE["gateway-event-sweep"]
    assert entry["task"] == gateway_event_sweep.name
    left = _stored(make_event())
    fresh = _stored(make_event())  # its own task is probably still in the queue: not yet
    done = _stored(make_event())
    GatewayEvent.objects.filter(pk__in=[left.pk, done.pk]).update(received_at=timezone.now() - timedelta(minutes=5))
    GatewayEvent.objects.filter(pk=done.pk).update(status="processed")
    queued.clear()
    headers = ticks.beat_headers("gateway-event-sweep", entry["schedule"])
    try:
        first = gateway_event_sweep.apply(headers=headers, task_id="beat-1").get()
        copy = gateway_event_sweep.apply(headers=headers, task_id="beat-2").get()  # a second beat's copy
    finally:
        for key in get_redis().scan_iter(f"payops:{SWEEP_SCOPE}:tick:*"):
            get_redis().delete(key)
    assert (first, copy) == (1, 0) and queued == [left.pk] and fresh.pk not in queued
