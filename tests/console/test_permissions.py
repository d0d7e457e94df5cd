"""Each group sees and does exactly its part; anyone else gets the login page."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.urls import reverse

from health.models import Alert, DrillRun
from tests.console.conftest import GROUP_MIGRATION, ensure_groups, make_alert, make_run

pytestmark = pytest.mark.django_db


def console_urls(alert: Alert, run: DrillRun) -> dict[str, str]:
    return {
        "index": reverse("admin:index"),
        "alerts": reverse("admin:health_alert_changelist"),
        "alert": reverse("admin:health_alert_change", args=[alert.pk]),
        "runbook": reverse("admin:health_runbook"),
        "system": reverse("admin:health_system"),
        "system_live": reverse("admin:health_system_live"),
        "runs": reverse("admin:health_healthcheckrun_changelist"),
        "snapshots": reverse("admin:health_componentsnapshot_changelist"),
        "silences": reverse("admin:health_silence_changelist"),
        "silence_add": reverse("admin:health_silence_add"),
        "notifications": reverse("admin:health_alertnotification_changelist"),
        "drills": reverse("admin:health_drillrun_changelist"),
        "drill_start": reverse("admin:health_drillrun_add"),
        "drill": reverse("admin:health_drillrun_change", args=[run.pk]),
        "drill_live": reverse("admin:health_drillrun_live", args=[run.pk]),
        "payments": reverse("admin:payments_payment_changelist"),
        "gateway_events": reverse("admin:payments_gatewayevent_changelist"),
        "api_clients": reverse("admin:payments_apiclient_changelist"),
        "api_client_add": reverse("admin:payments_apiclient_add"),
    }


# What each group may open (200); everything else in console_urls answers 403.
CAN_SEE = {
    "ops_viewer": {"index", "alerts", "alert", "runbook", "system", "system_live", "runs", "snapshots", "silences",
                   "notifications", "drills", "drill", "drill_live", "payments", "gateway_events"},
}
CAN_SEE["ops_operator"] = CAN_SEE["ops_viewer"] | {"silence_add", "drill_start"}
CAN_SEE["ops_admin"] = CAN_SEE["ops_operator"] | {"api_clients", "api_client_add"}


@pytest.fixture
def targets(make_user):  # type: ignore[no-untyped-def]
    alert = make_alert(severity="critical")
    run = DrillRun.objects.create(kind="log_test", status="succeeded", deadline_at=alert.first_seen,
                                  result={"handlers": [], "cloudwatch": {"detail": "off"}})
    make_run()
    return console_urls(alert, run)


def test_the_migration_gives_each_group_exactly_its_permissions() -> None:
    ensure_groups()
    perms = {g.name: {f"{p.content_type.app_label}.{p.codename}" for p in g.permissions.all()}
             for g in Group.objects.filter(name__startswith="ops_").prefetch_related("permissions__content_type")}
    viewer = {f"{app}.view_{model}" for app, model in GROUP_MIGRATION.VIEW} | {"payments.view_gatewayevent"}
    assert perms["ops_viewer"] == viewer
    assert perms["ops_operator"] == viewer | {"health.change_alert", "health.add_silence", "health.change_silence",
                                              "payments.change_payment", "health.add_drillrun",
                                              "payments.process_gatewayevent"}
    assert perms["ops_admin"] == perms["ops_operator"] | {
        "health.force_breaker", "health.delete_silence", "payments.view_apiclient", "payments.add_apiclient",
        "payments.change_apiclient", "admin.view_logentry", "health.view_breakeroverride"}
    # Nobody below ops_admin reaches API clients, and nobody at all deletes alerts or drill records.
    assert not any("apiclient" in p for p in perms["ops_operator"])
    assert not any(p.startswith("health.delete_alert") or p == "health.delete_drillrun" for ps in perms.values()
                   for p in ps)


@pytest.mark.parametrize("group", ["ops_viewer", "ops_operator", "ops_admin"])
def test_each_group_sees_exactly_its_pages(client, make_user, targets, group) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user(group))
    seen = {name: client.get(url).status_code for name, url in targets.items()}
    assert {name for name, code in seen.items() if code == 200} == CAN_SEE[group], seen
    assert {code for name, code in seen.items() if name not in CAN_SEE[group]} <= {403}


@pytest.mark.parametrize("who", ["anonymous", "non_staff", "staff_without_group"])
def test_anyone_else_gets_the_login_page_on_every_console_url(client, make_user, targets, who) -> None:  # type: ignore[no-untyped-def]
    if who == "non_staff":
        client.force_login(make_user("ops_admin", staff=False))  # even with every permission
    elif who == "staff_without_group":
        client.force_login(make_user(None))
    for name, url in targets.items():
        response = client.get(url)
        if who == "staff_without_group":
            # A staff member with no group is logged in but sees nothing of the console.
            assert response.status_code in (403, 200) and (name == "index" or response.status_code == 403), name
            continue
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("admin:login")), name
        page = client.get(response["Location"])
        assert page.status_code == 200 and b'name="password"' in page.content, name
    for url in (reverse("admin:health_breaker"), targets["drill_start"], targets["alerts"]):
        response = client.post(url, {"state": "open", "reason": "x", "minutes": 5, "kind": "log_test"})
        if who != "staff_without_group":
            assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert DrillRun.objects.filter(kind="log_test", status="queued").count() == 0


def test_the_index_panel_is_hidden_from_staff_without_a_console_group(client, make_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user(None))
    assert b"Operations status" not in client.get(reverse("admin:index")).content


def test_a_viewer_cannot_change_anything(client, make_user, targets) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user("ops_viewer"))
    alert = Alert.objects.get()
    page = client.get(targets["alerts"]).content.decode()
    assert 'value="acknowledge"' not in page and 'value="silence"' not in page
    client.post(targets["alerts"], {"action": "acknowledge", "_selected_action": [alert.pk], "apply": "1",
                                    "note": "x"})
    alert.refresh_from_db()
    assert alert.status == "open"
    assert client.post(reverse("admin:health_breaker"), {"state": "open", "reason": "x", "minutes": 5}).status_code == 403
    assert client.post(targets["drill_start"], {"kind": "log_test"}).status_code == 403
    assert b'form="act-acknowledge"' not in client.get(targets["alert"]).content
    assert not LogEntry.objects.exists()


def test_an_operator_works_alerts_and_drills_but_not_the_breaker_or_api_keys(client, make_user, targets) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user("ops_operator"))
    alert = Alert.objects.get()
    page = client.get(targets["alerts"]).content.decode()
    assert 'value="acknowledge"' in page and 'value="resolve"' in page and 'value="silence"' in page
    response = client.post(targets["alerts"], {"action": "acknowledge", "_selected_action": [alert.pk],
                                                "apply": "1", "note": "looking at the pool"}, follow=True)
    assert b"Acknowledged 1 alert" in response.content
    alert.refresh_from_db()
    assert alert.status == "acknowledged"
    assert "settle_now" in client.get(targets["payments"]).content.decode()
    system = client.get(targets["system"]).content.decode()
    assert "Only ops_admin can force the breaker" in system and 'action="/admin/health/healthcheckrun/system/breaker/"' not in system
    assert client.post(reverse("admin:health_breaker"), {"state": "open", "reason": "x", "minutes": 5}).status_code == 403


# transaction=True: forcing the breaker raises its alert from a thread of its own, committed
# outside the test's transaction; the flush after the test removes it (else it shows in later lists).
@pytest.mark.django_db(transaction=True)
def test_an_admin_forces_the_breaker_and_it_is_recorded(client, make_user, targets) -> None:  # type: ignore[no-untyped-def]
    from payments.gateway import get_gateway

    admin_user = make_user("ops_admin")
    client.force_login(admin_user)
    breaker = get_gateway().breaker
    breaker.reset()
    try:
        assert 'name="reason"' in client.get(targets["system"]).content.decode()
        response = client.post(reverse("admin:health_breaker"),
                               {"op": "force", "state": "open", "reason": "gateway incident 123", "minutes": 10},
                               follow=True)
        assert b"Breaker forced open for the whole fleet" in response.content
        snap = breaker.snapshot()
        assert snap.state == "open" and snap.forced["by"] == admin_user.username
        assert snap.forced["reason"] == "gateway incident 123"
        entry = LogEntry.objects.get(user=admin_user)
        assert "Forced open" in entry.change_message and "gateway incident 123" in entry.change_message
        client.post(reverse("admin:health_breaker"), {"op": "clear", "reason": "gateway back"})
        assert breaker.snapshot().forced is None
        assert LogEntry.objects.filter(user=admin_user, change_message__contains="gateway back").exists()
    finally:
        breaker.reset()


def test_system_health_shows_no_alert_or_payment_data_without_their_view_permission(client, make_user) -> None:  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Permission

    from tests.payments.factories import make_client

    user = make_user(None, username="health-only")
    user.user_permissions.add(Permission.objects.get(codename="view_healthcheckrun"))
    make_run()
    make_alert(severity="critical", component="gateway", condition="unreachable", message="secret-ish detail")
    api_client, _ = make_client()
    from payments.models import Payment

    Payment.objects.create(client=api_client, idempotency_key="k", request_hash="h", amount=500, currency="usd",
                           payment_method="pm_card_visa", status="unknown")
    client.force_login(user)
    html = client.get(reverse("admin:health_system")).content.decode()
    assert "data-component=\"database\"" in html
    assert "secret-ish detail" not in html and "Active alerts" not in html
    assert "Payments with an unknown outcome" not in html
    assert b"Operations status" in client.get(reverse("admin:index")).content  # the overall status, no counts
    assert b"console-count-n" not in client.get(reverse("admin:index")).content
