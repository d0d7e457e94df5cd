"""System Health: a card per component with bars coloured at the thresholds, the fleet against
max_connections, history charts, recent alerts, unknown outcomes, and a plain stale banner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from health import fleet
from tests.console.conftest import make_alert, make_history, make_run

pytestmark = pytest.mark.django_db
SYSTEM = "/admin/health/healthcheckrun/system/"


@pytest.fixture
def viewer(client, make_user):  # type: ignore[no-untyped-def]
    user = make_user("ops_viewer")
    client.force_login(user)
    return user


def card(html: str, component: str) -> str:
    match = re.search(rf'<article class="console-card[^"]*" data-component="{component}">(.*?)</article>', html, re.S)
    assert match, component
    return match.group(1)


def test_the_web_card_shows_gunicorn_threads_as_a_pool(client, viewer) -> None:  # type: ignore[no-untyped-def]
    make_run(web_pct=87.5)
    web = card(client.get(reverse("admin:health_system")).content.decode(), "web")
    assert "threads (fullest: web-1:101)" in web and "87.5%" in web and "console-level-warning" in web
    for label, value in (("busy", "14"), ("threads", "16"), ("waiting", "0"), ("waited &gt; 100 ms", "0"),
                         ("workers", "2")):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in web, label


def test_cards_show_bars_coloured_at_the_thresholds_and_the_pool_figures(client, viewer) -> None:  # type: ignore[no-untyped-def]
    make_run(db_pct=85.0, http_pct=95.0, latency_ms=42.0)
    html = client.get(reverse("admin:health_system")).content.decode()
    assert reverse("admin:health_system") == SYSTEM
    database = card(html, "database")
    assert "console-level-warning" in database and "85.0%" in database and "(warning)" in database
    assert 'style="width: 85.0%"' in database
    assert 'style="left: 80%"' in database and 'style="left: 90%"' in database  # the threshold marks
    for label, value in (("in use", "17"), ("idle", "3"), ("max", "20"), ("waiting", "2"), ("wait time", "340 ms"),
                         ("timeouts", "0"), ("errors", "0")):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in database, label
    assert "server connections" in database and "console-level-ok" in database  # 31 of 100
    payment = card(html, "payment_http")
    assert "console-level-critical" in payment and "(critical)" in payment and "95.0%" in payment
    assert "<dt>longest wait</dt><dd>4.0 ms</dd>" in payment
    for label, value in (("call limit", "12 of 20"), ("calls in flight", "9"), ("refused (saturated)", "5"),
                         ("slow calls", "30")):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in payment, label
    gateway = card(html, "gateway")
    assert "<dd>42 ms</dd>" in gateway and "Breaker:" in gateway and "CLOSED" in gateway
    assert "DEGRADED" in card(html, "database")


def test_history_charts_are_server_side_svg_over_the_hour_or_the_day(client, viewer) -> None:  # type: ignore[no-untyped-def]
    make_history(minutes=10)
    html = client.get(SYSTEM).content.decode()
    # Pools and the probe, then the Payments section's latency and rates.
    assert html.count("<svg class=\"console-chart\"") == 4
    assert "Pool utilisation, last hour" in html and "Gateway probe latency, last hour" in html
    assert "Gateway latency of payments, last hour" in html and "Success and timeout rates, last hour" in html
    assert "database (" in html and "payment_http (" in html  # legend with the latest value
    assert len(re.findall(r"<polyline ", html)) >= 3
    assert "warning 80%" in html and "critical 90%" in html
    day = client.get(SYSTEM + "?range=day").content.decode()
    assert "Pool utilisation, last day" in day
    live = client.get(reverse("admin:health_system_live") + "?range=day").content.decode()
    assert "<html" not in live and "Pool utilisation, last day" in live and "data-component=\"database\"" in live


def test_the_fleet_sums_every_process_pool_against_max_connections(client, viewer) -> None:  # type: ignore[no-untyped-def]
    docs = [
        {"process": f"web-{i}:10{i}", "host": f"web-{i}", "pid": 100 + i, "role": "web", "at": fleet.time.time(),
         "db": {"in_use": 4 + i, "idle": 2, "max": 20, "waiting": i, "size": 6 + i},
         "http": [{"client": "payment", "host": "https://api.stripe.com:443", "in_use": 3, "max": 10, "waiting": 0}],
         "web": {"threads": 8, "busy": i, "waiting": i - 1, "max_wait_ms": 250.0 if i == 3 else 0.0}}
        for i in range(1, 4)
    ]
    for doc in docs:
        fleet.write(doc)
    try:
        html = client.get(SYSTEM).content.decode()
        fleet_table = html[html.index("Fleet: every process"):]
        for doc in docs:
            assert f"<td>{doc['host']}</td><td>{doc['pid']}</td>" in fleet_table
        assert "5 / 2 / 20, 1 waiting" in fleet_table and "payment https://api.stripe.com:443: 3 / 10" in fleet_table
        assert "<td>1 / 8, 0 waiting</td>" in fleet_table and "3 / 8, 2 waiting" in fleet_table
        assert "(longest wait 250.0 ms)" in fleet_table
        with connection.cursor() as cursor:
            cursor.execute("SHOW max_connections")
            max_connections = int(cursor.fetchone()[0])
        assert re.search(rf"may open <strong>{60 + 0}</strong> connections", fleet_table) or \
            "may open <strong>" in fleet_table
        assert f"max_connections <strong>{max_connections}</strong>" in fleet_table
    finally:
        for doc in docs:
            fleet.forget(doc["process"])


def test_recent_alerts_and_unknown_outcomes_are_on_the_page(client, viewer) -> None:  # type: ignore[no-untyped-def]
    from payments.models import Payment
    from tests.payments.factories import make_client

    make_run()
    make_alert(severity="critical", component="gateway", condition="unreachable", message="probe failed: boom")
    api_client, _ = make_client()
    for amount, currency in ((1250, "usd"), (750, "usd"), (990, "eur")):
        Payment.objects.create(client=api_client, idempotency_key=f"k{amount}", request_hash="h", amount=amount,
                               currency=currency, payment_method="pm_card_visa", status="unknown")
    html = client.get(SYSTEM).content.decode()
    assert "gateway/unreachable" in html and "probe failed: boom" in html
    unknown = html[html.index("Payments with an unknown outcome"):]
    assert re.search(r"<td>USD</td>\s*<td><a [^>]*>2</a></td>\s*<td>20.00 USD</td>", unknown)
    assert re.search(r"<td>EUR</td>\s*<td><a [^>]*>1</a></td>\s*<td>9.90 EUR</td>", unknown)


def test_it_refreshes_itself_and_says_plainly_when_the_data_is_stale(client, viewer, settings) -> None:  # type: ignore[no-untyped-def]
    settings.HEALTH_CHECK_INTERVAL = 30
    make_run(at=timezone.now() - timedelta(seconds=30 * 3 + 5))
    html = client.get(SYSTEM).content.decode()
    assert 'data-live-interval="30"' in html and 'src="/static/console/live.js"' in html
    assert "Stale data: no health check for 9" in html and "(limit 90 s, three intervals)" in html
    assert "STALE" in client.get("/admin/").content.decode()
    make_run()
    fresh = client.get(reverse("admin:health_system_live")).content.decode()
    assert "Stale data" not in fresh and "console-stale" not in fresh.split("Fleet")[0]


def test_the_page_costs_the_same_queries_whatever_the_history(client, viewer) -> None:  # type: ignore[no-untyped-def]
    make_run()
    for i in range(3):
        make_alert(severity="warning", condition=f"c{i}")
    client.get(SYSTEM)
    with CaptureQueriesContext(connection) as small:
        client.get(SYSTEM)
    make_history(minutes=15)
    for i in range(30):
        make_alert(severity="error", condition=f"d{i}")
    with CaptureQueriesContext(connection) as large:
        client.get(SYSTEM)
    assert len(large) == len(small) <= 20


@pytest.fixture
def fleet_of_one(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A Redis database where only this process publishes: the suite's workers (drills, gateway
    events) count payments of earlier tests and publish them whenever their turn comes."""
    from config.redis import get_redis

    get_redis.cache_clear()
    settings.REDIS_URL = urlunsplit(urlsplit(settings.REDIS_URL)._replace(path="/8"))
    get_redis().flushdb()
    yield
    get_redis().flushdb()
    get_redis.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_the_payments_section_shows_the_runs_figures_against_the_read_timeout(client, make_user, gateway,
                                                                              fleet_of_one) -> None:  # type: ignore[no-untyped-def]
    from health.checks import PaymentsCheck
    from health.services.runs import health_check_run
    from payments.figures import figures_reset
    from tests.payments.factories import Api, make_client
    from tests.support.figures import pay_counted

    figures_reset()
    now = timezone.now()
    health_check_run(now=now - timedelta(seconds=90), checks=[PaymentsCheck()])
    api = Api(make_client()[1])
    codes = []
    for method in ["pm_card_visa"] * 3 + ["pm_card_chargeCustomerFail"]:
        body = pay_counted(api, payment_method=method)
        codes += [body["failure_code"]] if body["failure_code"] else []
    health_check_run(now=now - timedelta(seconds=60), checks=[PaymentsCheck()])
    gateway.fault("latency", delay_ms=400, path_prefix="/v1/payment_intents")
    for _ in range(2):
        assert pay_counted(api)["status"] == "succeeded"
    health_check_run(now=now - timedelta(seconds=30), checks=[PaymentsCheck()])

    client.force_login(make_user("ops_viewer"))
    html = client.get(reverse("admin:health_system")).content.decode()
    section = html[html.index('id="payments-figures"'):]
    section = section[:section.index("</section>")]
    figures = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", section))
    assert figures["payments"] == "6" and figures["success rate"] == "83.3%"
    assert figures["read timeout"] == "1000 ms" and figures["409 / 429 / 5xx"] == "0 / 0 / 0"
    # Two of six tries took 400 ms or more: the p95 over the range is among them, the p50 is not.
    assert int(figures["latency p95"].split()[0]) >= 400 > int(figures["latency p50"].split()[0])
    assert codes and f"<code>{codes[0]}</code></td><td>1</td>" in section  # the gateway's decline code
    assert "read timeout 1,000 ms" in section and "warning 50%" in section and "error 80%" in section
    assert section.count("<polyline") + section.count("<circle") >= 3
    payments_card = card(html, "payments")
    assert "<dt>since the last run</dt><dd>2</dd>" in payments_card
    assert "<dt>success rate</dt><dd>100.0%</dd>" in payments_card

    # Payment volumes and decline codes are payment data: not for those who may not view payments.
    from django.contrib.auth.models import Permission

    health_only = make_user(None, username="health-only-payments")
    health_only.user_permissions.add(Permission.objects.get(codename="view_healthcheckrun"))
    client.force_login(health_only)
    assert 'id="payments-figures"' not in client.get(reverse("admin:health_system")).content.decode()
