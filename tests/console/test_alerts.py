"""Alerts in the console: worst first, badges that say it in words, filters, the actions with
their note, an alert's history and snapshots, the runbook, and the index panel."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from health.console.runbook import load_runbook, slug
from health.models import Alert, Silence
from tests.console.conftest import make_alert, make_run

pytestmark = pytest.mark.django_db

ALERTS = reverse("admin:health_alert_changelist") if False else "/admin/health/alert/"


@pytest.fixture
def operator(client, make_user):  # type: ignore[no-untyped-def]
    user = make_user("ops_operator")
    client.force_login(user)
    return user


def rows(html: str) -> list[str]:
    return re.findall(r'<tr>\s*<td class="action-checkbox">.*?</tr>', html, flags=re.S)


def test_the_list_is_worst_first_then_most_recent_with_badges_in_words(client, operator) -> None:  # type: ignore[no-untyped-def]
    make_alert(severity="info", condition="a", last=timedelta(seconds=1))
    make_alert(severity="critical", condition="b", last=timedelta(minutes=5))
    make_alert(severity="warning", condition="c", last=timedelta(seconds=2))
    make_alert(severity="critical", condition="d", last=timedelta(seconds=30))
    make_alert(severity="error", condition="e", last=timedelta(seconds=3))
    html = client.get(ALERTS).content.decode()
    order = [re.search(r'console-severity-(\w+)">(\w+)<', row).groups() for row in rows(html)]
    assert order == [("critical", "CRITICAL"), ("critical", "CRITICAL"), ("error", "ERROR"), ("warning", "WARNING"),
                     ("info", "INFO")]
    conditions = [re.search(r'/change/(?:\?[^"]*)?">(\w+)</a>', row).group(1) for row in rows(html)]
    assert conditions == ["d", "b", "e", "c", "a"]  # the more recent critical first
    table = html[html.index('id="result_list"'):]
    head = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", table[:table.index("</thead>")])).lower()
    for header in ("first seen (utc)", "last seen (utc)", "occurrences", "age", "acknowledged by"):
        assert header in head, header


def test_filters_and_search(client, operator) -> None:  # type: ignore[no-untyped-def]
    make_alert(severity="critical", component="database", condition="pool_exhausted")
    make_alert(severity="warning", component="redis", condition="slow", message="redis ping took 140 ms")
    make_alert(severity="warning", component="gateway", condition="circuit_open", status="resolved")
    old = make_alert(severity="info", component="celery", condition="queue_backlog", age=timedelta(days=9),
                     last=timedelta(days=8))

    def conditions(query: str) -> set[str]:
        html = client.get(ALERTS + query).content.decode()
        return set(re.findall(r'/change/(?:\?[^"]*)?">(\w+)</a>', html))

    assert conditions("?severity__exact=warning") == {"slow", "circuit_open"}
    assert conditions("?state=active") == {"pool_exhausted", "slow", "queue_backlog"}
    assert conditions("?state=resolved") == {"circuit_open"}
    assert conditions("?component=redis") == {"slow"}
    assert conditions("?severity__exact=warning&state=active") == {"slow"}
    since = urlencode({"last_seen__gte": (timezone.now() - timedelta(days=7)).isoformat()})
    assert old.condition not in conditions(f"?{since}") and "slow" in conditions(f"?{since}")
    assert conditions("?q=140+ms") == {"slow"}


def test_acknowledge_asks_for_a_note_then_reports_and_records_it(client, operator) -> None:  # type: ignore[no-untyped-def]
    alert = make_alert(severity="critical")
    other = make_alert(severity="warning", condition="slow", component="redis", status="acknowledged")
    page = client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk, other.pk]})
    assert page.status_code == 200 and b'name="note"' in page.content and b"2</strong> alert(s)" in page.content
    alert.refresh_from_db()
    assert alert.status == "open"  # nothing happens before the note
    missing = client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk], "apply": "1", "note": ""})
    assert b"This field is required" in missing.content
    done = client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk, other.pk], "apply": "1",
                                "note": "on it: restarting web-2"}, follow=True)
    text = done.content.decode()
    assert "Acknowledged 1 alert(s): critical database/pool_utilisation." in text
    assert "Skipped redis/slow (already acknowledged)" in text
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by == operator
    assert alert.acknowledgement_note == "on it: restarting web-2"
    entry = LogEntry.objects.get(object_id=str(alert.pk))
    assert entry.user == operator and entry.change_message == "Acknowledged: on it: restarting web-2"
    # The list shows who acknowledged it.
    assert f"<td class=\"field-acknowledged_by nowrap\">{operator.username}</td>" in client.get(ALERTS).content.decode() \
        or operator.username in client.get(ALERTS + "?state=acknowledged").content.decode()


def test_resolve_and_silence(client, operator) -> None:  # type: ignore[no-untyped-def]
    first = make_alert(severity="error", component="gateway", condition="unreachable")
    second = make_alert(severity="warning", component="redis", condition="slow")
    done = client.post(ALERTS, {"action": "resolve", "_selected_action": [first.pk], "apply": "1",
                                "note": "gateway incident over"}, follow=True)
    assert b"Resolved 1 alert(s): error gateway/unreachable." in done.content
    first.refresh_from_db()
    assert first.status == "resolved" and first.resolved_by == operator and first.resolution_note == "gateway incident over"
    page = client.post(ALERTS, {"action": "silence", "_selected_action": [second.pk]})
    assert b'name="duration"' in page.content and b'name="reason"' in page.content
    before = timezone.now()
    done = client.post(ALERTS, {"action": "silence", "_selected_action": [second.pk], "apply": "1",
                                "duration": "240", "reason": "redis maintenance window"}, follow=True)
    assert b"Silenced 1 condition(s) until" in done.content and b"redis/slow" in done.content
    silence = Silence.objects.get()
    assert (silence.component, silence.condition, silence.created_by) == ("redis", "slow", operator)
    assert timedelta(hours=4) <= silence.ends_at - before < timedelta(hours=4, minutes=1)
    assert LogEntry.objects.filter(object_id=str(second.pk), change_message__contains="redis maintenance").exists()


def test_an_alert_page_shows_history_snapshots_and_its_runbook_entry(client, operator) -> None:  # type: ignore[no-untyped-def]
    make_run(at=timezone.now() - timedelta(seconds=90), db_pct=70)
    make_run(at=timezone.now() - timedelta(seconds=60), db_pct=88)  # raises database/pool_utilisation
    make_run(at=timezone.now() - timedelta(seconds=30), db_pct=91)
    alert = Alert.objects.get(component="database", condition="pool_utilisation")
    client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk], "apply": "1",
                         "note": "watching the pool"})
    html = client.get(reverse("admin:health_alert_change", args=[alert.pk])).content.decode()
    assert "first seen" in html and "watching the pool" in html and operator.username in html
    assert html.count("console-status-") >= 3 and "88.0%" in html and "70.0%" in html  # snapshots before and after
    assert "<svg" in html and "<polyline" in html
    link = re.search(r'href="(/admin/health/alert/runbook/#([\w-]+))"', html)
    assert link and link.group(2) == "database-pool_utilisation"
    runbook = client.get(link.group(1)).content.decode()
    assert 'id="database-pool_utilisation"' in runbook
    assert 'form="act-resolve"' in html  # the operator can act from the page


def test_every_alert_condition_in_the_code_has_a_runbook_section() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "health"
    source = "\n".join(p.read_text() for p in [*root.glob("checks/*.py"), *root.glob("services/*.py"), root / "rules.py"])
    conditions = set(re.findall(r'Problem\(\s*"(\w+)"', source)) | set(re.findall(r'condition="(\w+)"', source))
    conditions |= {"pool_utilisation", "server_connections", "memory", "log_queue", "thread_utilisation", "timeout",
                   "check_failed", "gateway_latency", "gateway_timeouts"}
    anchors = load_runbook().anchors
    missing = [c for c in sorted(conditions) if not any(a == slug(c) or a.endswith("-" + slug(c)) for a in anchors)]
    assert missing == []
    assert "forcing-the-circuit-breaker" in anchors and "settling-payments-by-hand" in anchors


def test_the_index_shows_status_and_open_alerts_per_severity_above_the_apps(client, operator) -> None:  # type: ignore[no-untyped-def]
    make_run(db_pct=85)  # a warning
    make_alert(severity="critical", component="gateway", condition="unreachable")
    make_alert(severity="critical", component="redis", condition="unreachable", status="acknowledged")
    make_alert(severity="error", component="celery", condition="no_workers", status="resolved")
    html = client.get(reverse("admin:index")).content.decode()
    assert html.index("Operations status") < html.index('class="app-health')
    assert 'console-status-degraded">DEGRADED<' in html
    counts = dict((sev, int(n)) for n, sev in re.findall(
        r'class="console-count-n">(\d+)</span> (\w+)</a>', html))
    assert counts == {"critical": 2, "error": 0, "warning": 1, "info": 0}
    assert f'href="{ALERTS}?severity__exact=critical&amp;state=active"' in html
    listed = client.get(ALERTS + "?severity__exact=critical&state=active").content.decode()
    assert len(rows(listed)) == 2


def test_console_pages_carry_no_inline_script_or_handler(client, make_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user("ops_admin"))
    alert = make_alert()
    make_run()
    for url in ("/admin/", ALERTS, reverse("admin:health_alert_change", args=[alert.pk]),
                reverse("admin:health_system"), reverse("admin:health_runbook"), reverse("admin:health_drillrun_add")):
        response = client.get(url)
        html = response.content.decode()
        assert "script-src 'self'" in response["Content-Security-Policy"]
        inline = [s for s in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
                  if "src=" not in s[0] and 'type="application/json"' not in s[0]]
        assert inline == [], url
        assert not re.search(r"\son[a-z]+\s*=", html), url


def test_the_alert_list_shows_the_payments_each_alert_affected(client, make_user) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    client.force_login(make_user("ops_viewer"))
    alert = make_alert(severity="error", component="gateway", condition="unreachable")
    alert.payments_in_flight, alert.amount_affected = 3, {"eur": 1750, "jpy": 900}
    alert.save()
    make_alert(severity="warning", component="redis", condition="memory")
    page = client.get(reverse("admin:health_alert_changelist")).content.decode()
    assert "3 (17.50 EUR, 900 JPY)" in page
    detail = client.get(reverse("admin:health_alert_change", args=[alert.pk])).content.decode()
    assert "3 (17.50 EUR, 900 JPY)" in detail
