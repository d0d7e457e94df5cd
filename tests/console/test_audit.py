"""The audit trail page (who did what to which object), breaker overrides and key changes on it,
and API key rotation from the console and the command line: the old key stops at once, the new
one is shown once and kept nowhere (no cookie, no session, no table)."""

from __future__ import annotations

import io

import pytest
import requests
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.urls import reverse

from health.models import BreakerOverride
from payments.models import ApiClient
from tests.console.conftest import make_run
from tests.payments.factories import ISSUED_KEYS, Api, make_client
from tests.support.processes import gunicorn

AUDIT = reverse("admin:admin_logentry_changelist")


def _key_in_page(html: str) -> str:
    start = html.index('<code class="api-key">') + len('<code class="api-key">')
    key = html[start:html.index("</code>", start)]
    ISSUED_KEYS.append(key)  # the suite's final scan proves it was never logged
    return key


def _nowhere_but_the_page(response, key: str) -> None:  # type: ignore[no-untyped-def]
    assert "no-store" in response["Cache-Control"]
    assert all(key not in morsel.value for morsel in response.cookies.values())
    assert not any(key in (s.session_data or "") or key in str(s.get_decoded()) for s in Session.objects.all())
    assert not ApiClient.objects.filter(key_hash=key).exists()


@pytest.mark.django_db
def test_only_ops_admin_reads_the_audit_trail_and_nobody_edits_it(client, make_user) -> None:  # type: ignore[no-untyped-def]
    operator = make_user("ops_operator", username="operator")
    client.force_login(operator)
    assert client.get(AUDIT).status_code == 403
    assert AUDIT not in client.get(reverse("admin:index")).content.decode()

    admin_user = make_user("ops_admin", username="admin-a")
    entry = LogEntry.objects.create(user=admin_user, action_flag=CHANGE, object_repr="something",
                                    change_message="did a thing")
    client.force_login(admin_user)
    assert AUDIT in client.get(reverse("admin:index")).content.decode()  # linked from the console's home
    assert client.get(AUDIT).status_code == 200
    assert client.get(reverse("admin:admin_logentry_change", args=[entry.pk])).status_code == 200
    assert client.post(reverse("admin:admin_logentry_change", args=[entry.pk]), {}).status_code == 403
    assert client.post(reverse("admin:admin_logentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:admin_logentry_add")).status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk, change_message="did a thing").exists()


# transaction=True: forcing the breaker raises its alert from a thread of its own, committed
# outside the test's transaction; the flush after the test removes it.
@pytest.mark.django_db(transaction=True)
def test_a_breaker_override_is_on_the_trail_under_its_object_filtered_by_user_and_action(  # type: ignore[no-untyped-def]
        client, make_user) -> None:
    from payments.gateway import get_gateway

    make_run()
    admin_user = make_user("ops_admin", username="admin-b")
    other = make_user("ops_admin", username="admin-c")
    LogEntry.objects.create(user=other, action_flag=CHANGE, object_repr="not mine", change_message="other's work")
    client.force_login(admin_user)
    breaker = get_gateway().breaker
    breaker.reset()
    try:
        client.post(reverse("admin:health_breaker"),
                    {"op": "force", "state": "open", "reason": "gateway incident 123", "minutes": 10})
        client.post(reverse("admin:health_breaker"), {"op": "clear", "reason": "gateway back"})
    finally:
        breaker.reset()

    override = BreakerOverride.objects.get()
    assert override.forced_by == admin_user and override.ended_by == admin_user
    assert override.end_reason == "gateway back"
    entries = LogEntry.objects.filter(object_id=str(override.pk), content_type__model="breakeroverride")
    assert sorted(e.action_flag for e in entries) == [ADDITION, CHANGE]

    mine = client.get(AUDIT, {"user": admin_user.pk}).content.decode()
    assert "gateway incident 123" in mine and "gateway back" in mine and "other&#x27;s work" not in mine
    assert reverse("admin:health_breakeroverride_change", args=[override.pk]) in mine
    added = client.get(AUDIT, {"user": admin_user.pk, "action_flag__exact": ADDITION}).content.decode()
    assert "gateway incident 123" in added and "gateway back" not in added
    assert "other&#x27;s work" in client.get(AUDIT, {"user": other.pk}).content.decode()


@pytest.mark.django_db(transaction=True)
def test_rotating_a_key_in_the_console_stops_the_old_key_at_once_in_a_running_server(  # type: ignore[no-untyped-def]
        client, make_user, tmp_path) -> None:
    api_client, old = make_client("shop")
    admin_user = make_user("ops_admin", username="admin-d")
    client.force_login(admin_user)
    with gunicorn(workers=1, threads=2, log=tmp_path / "web.log") as base:
        for _ in range(3):  # the worker caches the key
            assert requests.get(f"{base}/api/v1/payments", headers={"Authorization": f"Bearer {old}"},
                                timeout=10).status_code == 200
        response = client.post(reverse("admin:payments_apiclient_changelist"),
                               {"action": "rotate", "_selected_action": [api_client.pk]})
        assert response.status_code == 200
        html = response.content.decode()
        new = _key_in_page(html)
        assert new != old and "shop" in html
        _nowhere_but_the_page(response, new)
        assert requests.get(f"{base}/api/v1/payments", headers={"Authorization": f"Bearer {old}"},
                            timeout=10).status_code == 401
        assert requests.get(f"{base}/api/v1/payments", headers={"Authorization": f"Bearer {new}"},
                            timeout=10).status_code == 200
    # The page after shows no key again, and the trail says who rotated it.
    assert new not in client.get(reverse("admin:payments_apiclient_changelist")).content.decode()
    entry = LogEntry.objects.get(user=admin_user, object_id=str(api_client.pk))
    assert "Rotated the API key" in entry.change_message and new not in entry.change_message
    assert "Rotated the API key" in client.get(AUDIT, {"user": admin_user.pk}).content.decode()


@pytest.mark.django_db
def test_a_key_created_in_the_console_is_shown_in_the_page_never_in_a_cookie(client, make_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user("ops_admin", username="admin-e"))
    response = client.post(reverse("admin:payments_apiclient_add"), {"name": "partner"})
    assert response.status_code == 200
    key = _key_in_page(response.content.decode())
    _nowhere_but_the_page(response, key)
    assert Api(key).get("/api/v1/payments").status_code == 200
    assert key not in client.get(reverse("admin:payments_apiclient_changelist")).content.decode()


@pytest.mark.django_db(transaction=True)
def test_rotate_api_key_command_prints_a_new_key_and_the_old_one_stops() -> None:
    _, old = make_client("billing")
    assert Api(old).get("/api/v1/payments").status_code == 200
    out = io.StringIO()
    call_command("rotate_api_key", "billing", stdout=out)
    new = out.getvalue().strip().splitlines()[-1]
    ISSUED_KEYS.append(new)
    assert Api(old).get("/api/v1/payments").status_code == 401
    assert Api(new).get("/api/v1/payments").status_code == 200
