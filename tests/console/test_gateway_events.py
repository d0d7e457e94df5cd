"""Gateway events in the console: a read-only list where failed ones are one click away,
searched by event or intent id, and "process again" for operators only, audited."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from config.redis import get_redis
from payments.models import GatewayEvent
from payments.webhooks import services
from payments.webhooks.refusals import refusals_key

pytestmark = pytest.mark.django_db


def today() -> str:
    return refusals_key(datetime.now(UTC).date())

EVENTS = "/admin/payments/gatewayevent/"


def make_event(*, status: str = "processed", type: str = "payment_intent.succeeded", object_id: str = "",
               error: str = "") -> GatewayEvent:
    event_id = f"evt_{uuid.uuid4().hex[:14]}"
    object_id = object_id or f"pi_{uuid.uuid4().hex[:14]}"
    return GatewayEvent.objects.create(
        event_id=event_id, type=type, object_id=object_id, status=status, error=error, received_at=timezone.now(),
        payload={"id": event_id, "type": type, "data": {"object": {"id": object_id}}}, attempts=1,
    )


def listed(html: str) -> set[str]:
    return set(re.findall(r">(evt_[0-9a-f]{14})<", html))


@pytest.fixture
def events() -> dict[str, GatewayEvent]:
    return {
        "failed": make_event(status="failed", error="RuntimeError: the gateway's answer could not be read"),
        "ignored": make_event(status="ignored", type="customer.created", object_id="cus_1"),
        "processed": make_event(object_id="pi_findme_123456"),
    }


def test_failed_events_are_counted_and_one_click_away_and_search_finds_by_event_or_intent(
        client, make_user, events) -> None:  # type: ignore[no-untyped-def]
    get_redis().delete(today())
    get_redis().hincrby(today(), "signature_invalid", 3)
    client.force_login(make_user("ops_viewer"))
    page = client.get(EVENTS).content.decode()
    assert listed(page) == {e.event_id for e in events.values()}
    assert '<a href="?status__exact=failed">1 failed to process</a>' in page
    assert "signature_invalid 3" in page
    failed = client.get(EVENTS, {"status__exact": "failed"}).content.decode()
    assert listed(failed) == {events["failed"].event_id} and "RuntimeError" in failed
    assert listed(client.get(EVENTS, {"type__exact": "customer.created"}).content.decode()) == {
        events["ignored"].event_id}
    assert 'href="?type__exact=customer.created"' in page  # a filter for each type seen lately
    assert listed(client.get(EVENTS, {"q": "pi_findme_123456"}).content.decode()) == {events["processed"].event_id}
    assert listed(client.get(EVENTS, {"q": events["failed"].event_id}).content.decode()) == {
        events["failed"].event_id}


def test_a_viewer_reads_but_cannot_process_again_or_change(client, make_user, events, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    queued: list[int] = []
    monkeypatch.setattr(services, "_queue", queued.append)
    client.force_login(make_user("ops_viewer"))
    assert 'value="process_again"' not in client.get(EVENTS).content.decode()
    client.post(EVENTS, {"action": "process_again", "_selected_action": [events["failed"].pk]})
    assert GatewayEvent.objects.get(pk=events["failed"].pk).status == "failed" and queued == []
    change = client.get(f"{EVENTS}{events['failed'].pk}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert client.post(f"{EVENTS}{events['failed'].pk}/change/", {"status": "processed"}).status_code == 403
    assert client.get(f"{EVENTS}{events['failed'].pk}/delete/").status_code == 403


def test_an_operator_processes_failed_and_ignored_events_again_through_the_task(
        client, make_user, events, monkeypatch, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    queued: list[Any] = []
    monkeypatch.setattr(services, "_queue", queued.append)
    user = make_user("ops_operator")
    client.force_login(user)
    assert 'value="process_again"' in client.get(EVENTS).content.decode()
    selected = [e.pk for e in events.values()]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EVENTS, {"action": "process_again", "_selected_action": selected}, follow=True)
    assert "2 event(s) queued to be processed again; 1 left alone" in response.content.decode()
    assert sorted(queued) == sorted([events["failed"].pk, events["ignored"].pk])
    statuses = dict(GatewayEvent.objects.values_list("pk", "status"))
    assert statuses == {events["failed"].pk: "received", events["ignored"].pk: "received",
                        events["processed"].pk: "processed"}
    assert GatewayEvent.objects.get(pk=events["failed"].pk).error == ""
    audit = {(e.object_id, e.change_message) for e in LogEntry.objects.filter(user=user)}
    assert audit == {(str(events["failed"].pk), "Process again (was failed)"),
                     (str(events["ignored"].pk), "Process again (was ignored)")}
