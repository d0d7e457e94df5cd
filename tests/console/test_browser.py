"""The console in a real headless Chromium (Debian's, driven by Playwright) against a live
server and a real Celery worker: log in, work alerts, watch System Health refresh, run a drill.
Screenshots of the main pages go to docs/screenshots/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, make_alert, make_history, make_run

CHROMIUM = "/usr/bin/chromium"
# The README's pictures are refreshed on purpose (SAVE_SCREENSHOTS=1 make test); an ordinary
# run writes them to a scratch folder so that it leaves the work tree clean.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("SAVE_SCREENSHOTS")
         else Path(os.environ.get("TMPDIR", "/tmp")) / "payops-screenshots")
SHOTS.mkdir(parents=True, exist_ok=True)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (scripts/browser.sh installs it)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, which Django's ORM would take
    # for async code; the test's own queries are plain synchronous ones.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def page(browser, live_server, make_user, settings) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    settings.HEALTH_CHECK_INTERVAL = 2  # the page refreshes every 2 s; stale after 6 s
    user = make_user("ops_admin", username="ana")
    context = browser.new_context(viewport={"width": 1600, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.csp_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda msg: "Content Security Policy" in msg.text and page.csp_errors.append(msg.text))
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    yield page
    context.close()


def shot(page: Any, name: str, *, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def test_work_the_alerts_from_the_index_to_acknowledged(page) -> None:  # type: ignore[no-untyped-def]
    make_history(minutes=20)
    make_run(db_pct=86.0, http_pct=40.0)
    make_alert(severity="critical", component="gateway", condition="unreachable",
               message="gateway probe failed: gateway probe timed out")
    make_alert(severity="error", component="payments", condition="unknown_overdue",
               message="3 payments unsettled for more than 300 s (usd 4500, minor units)")
    make_alert(severity="info", component="celery", condition="workers_missing", message="1 of 2 workers answered")
    page.reload()
    panel = page.locator(".console-status-panel")
    assert "DEGRADED" in panel.inner_text()
    assert panel.locator(".console-count.console-severity-critical .console-count-n").inner_text() == "1"
    shot(page, "index", full=False)

    with page.expect_navigation():
        page.click(".console-count.console-severity-critical")
    assert page.locator("#result_list tbody tr").count() == 1
    with page.expect_navigation():
        page.click(".console-nav >> text=Alerts")
    severities = page.locator("#result_list tbody td.field-severity_badge").all_inner_texts()
    ranks = {"CRITICAL": 4, "ERROR": 3, "WARNING": 2, "INFO": 1}
    assert [ranks[s] for s in severities] == sorted((ranks[s] for s in severities), reverse=True)
    assert severities[0] == "CRITICAL" and severities[-1] == "INFO"
    page.click("#toggle-nav-sidebar")  # more room for the columns (remembered by the browser)
    shot(page, "alerts", full=False)

    page.locator("#result_list tbody tr").first.locator("input.action-select").check()
    page.select_option("select[name=action]", "acknowledge")
    with page.expect_navigation():
        page.click("button[name=index]")
    page.fill("textarea[name=note]", "on it: the gateway's status page shows an incident")
    shot(page, "acknowledge", full=False)
    with page.expect_navigation():
        page.click("input[type=submit][value='Acknowledge alerts']")
    assert "Acknowledged 1 alert(s): critical gateway/unreachable." in page.locator(".messagelist").inner_text()
    assert page.locator("#result_list tbody tr").first.locator("td.field-acknowledged_by").inner_text() == "ana"

    with page.expect_navigation():
        page.locator("#result_list tbody tr").first.locator("td.field-condition a, th.field-condition a").click()
    assert "on it: the gateway" in page.locator("section[aria-label=History]").inner_text()
    with page.expect_navigation():  # the runbook is another page: wait for it to load
        page.click("text=Runbook: gateway: unreachable")
    assert page.url.endswith("#gateway-unreachable")
    assert page.locator("#gateway-unreachable").is_visible()
    page.goto("/admin/health/alert/?state=active&component=database")
    with page.expect_navigation():
        page.locator("#result_list tbody tr").first.locator("td.field-condition a, th.field-condition a").click()
    shot(page, "alert")
    assert page.csp_errors == []


@pytest.fixture
def web_processes() -> Iterator[None]:
    """Two web processes' published pools beside the real worker's, for the fleet table."""
    from health import fleet

    docs = [{"process": f"web-{i}:{4100 + i}", "host": f"web-{i}", "pid": 4100 + i, "role": "web", "at": time.time(),
             "db": {"in_use": 3 + 4 * i, "idle": 4, "max": 20, "waiting": i - 1, "size": 7 + 4 * i},
             "http": [{"client": "payment", "host": "https://api.stripe.com:443", "in_use": 2 * i, "max": 10,
                       "waiting": 0}],
             "web": {"threads": 8, "busy": 3 * i, "waiting": 0, "max_wait_ms": 0.0}} for i in (1, 2)]
    for doc in docs:
        fleet.write(doc)
    yield
    for doc in docs:
        fleet.forget(doc["process"])


def test_system_health_shows_bars_and_charts_and_refreshes_after_a_new_run(page, console_worker,  # type: ignore[no-untyped-def]
                                                                          web_processes) -> None:
    page.goto("/admin/health/healthcheckrun/system/")
    page.click("#toggle-nav-sidebar")
    make_history(minutes=40)
    make_run(db_pct=55.0, http_pct=84.0, latency_ms=25.0)
    make_alert(severity="critical", component="gateway", condition="unreachable", message="gateway probe failed")
    page.goto("/admin/health/healthcheckrun/system/")
    database = page.locator("article[data-component=database]")
    assert "55.0%" in database.inner_text()
    assert page.locator("article[data-component=payment_http] .console-bar-fill.console-level-warning").count() == 1
    assert page.locator("svg.console-chart polyline").count() >= 3
    payments = page.locator("section#payments-figures")
    assert "Gateway latency of payments, last hour" in payments.inner_html()
    assert "read timeout 1,000 ms" in payments.inner_html()
    assert "card_declined" in payments.inner_text() and "90.0%" in payments.inner_text()
    assert "80.0" in payments.inner_text()  # payments per minute: 40 every 30 s
    assert page.locator(".console-stale").count() == 0
    fleet_rows = page.locator("section[aria-label=Fleet] tbody tr")
    deadline = time.monotonic() + 15
    while fleet_rows.count() < 3 and time.monotonic() < deadline:  # the worker publishes every few seconds
        page.wait_for_timeout(500)
        page.reload()
    assert {"web-1", "web-2"} <= set(page.locator("section[aria-label=Fleet] tbody td:nth-child(2)").all_inner_texts())
    assert "worker" in page.locator("section[aria-label=Fleet] tbody").inner_text()
    page.evaluate("window.__notReloaded = true")
    shot(page, "system-health")

    time.sleep(2.1)  # the next check interval (2 s here): a run of its own
    make_run(db_pct=95.0, http_pct=84.0, latency_ms=30.0)  # a new health run while the page is open
    deadline = time.monotonic() + 15
    while "95.0%" not in database.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert "95.0%" in database.inner_text()
    assert page.evaluate("window.__notReloaded") is True  # refreshed in place, not reloaded
    assert database.locator(".console-bar-fill.console-level-critical").count() == 1
    assert "(critical)" in database.inner_text()

    # No run for three intervals: the page says so by itself.
    page.wait_for_selector(".console-stale", timeout=15000)
    assert "Stale data: no health check for" in page.locator(".console-stale").first.inner_text()
    assert page.csp_errors == []


def test_run_a_drill_and_watch_its_progress_and_result(page, console_worker) -> None:  # type: ignore[no-untyped-def]
    page.goto("/admin/health/drillrun/add/")
    page.click("#toggle-nav-sidebar")
    shot(page, "drills", full=False)
    form = page.locator("#drill-db_pool")
    form.locator("input[name=hold_ms]").fill("1500")
    form.locator("input[type=submit]").click()
    page.wait_for_url("**/admin/health/drillrun/*/change/")
    page.wait_for_selector(".console-drill-run[data-status=running]", timeout=15000)
    assert page.locator(".console-progress").is_visible()
    page.wait_for_selector(".console-drill-run[data-final='1']", timeout=60000)
    verdict = page.locator(".console-verdict").inner_text()
    assert "5 queued" in verdict and "0 failed" in verdict, verdict
    assert page.locator(".console-result svg.console-chart rect").count() >= 25
    shot(page, "drill")
    page.goto("/admin/health/alert/runbook/")
    shot(page, "runbook", full=False)
    assert page.csp_errors == []
