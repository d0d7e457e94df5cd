"""gunicorn's threads are a pool too: busy threads and requests that waited for one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from health.checks import WebThreadsCheck
from health.models import Alert
from health.services.runs import health_check_run
from tests.console.conftest import ensure_groups
from tests.console.test_system_health import card
from tests.health.conftest import other_web_doc
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)

FAST_PUBLISH = {"HEALTH_PUBLISH_INTERVAL": "1", "HEALTH_CHECK_INTERVAL": "2"}


def test_a_worker_short_of_threads_shows_them_busy_and_its_queued_requests(tmp_path, ticker, client) -> None:
    with gunicorn(threads=2, log=tmp_path / "web.log", **FAST_PUBLISH) as base:
        with ThreadPoolExecutor(3) as executor:
            # Two threads: the third request waits for one (about 1.5 s).
            slow = [executor.submit(requests.get, f"{base}/_test/hold-db?ms=1500", timeout=15) for _ in range(3)]
            busy = other_web_doc(lambda doc: (doc.get("web") or {}).get("busy") == 2)
            assert busy is not None, (tmp_path / "web.log").read_text()[-2000:]
            during = health_check_run(now=ticker(), checks=[WebThreadsCheck()]).snapshots.get()
            assert [r.result().status_code for r in slow] == [200, 200, 200]
        waited = other_web_doc(lambda doc: (doc.get("web") or {}).get("recent", {}).get("queued", 0) >= 1, timeout=5)
        assert waited is not None
        after = health_check_run(now=ticker(), checks=[WebThreadsCheck()]).snapshots.get()

    assert busy["web"]["threads"] == 2
    assert during.figures["utilisation_pct"] == 100.0
    assert Alert.objects.get(component="web", condition="thread_utilisation").severity == "critical"
    assert after.figures["queued"] >= 1 and after.figures["max_wait_ms"] >= 1000
    queued = Alert.objects.get(component="web", condition="requests_queued")
    assert (queued.severity, queued.status) == ("warning", "open")
    assert "waited more than 100 ms for a gunicorn thread" in queued.message
    # System Health shows the web card from the last run.
    viewer = get_user_model().objects.create_user(username="web-card-viewer", is_staff=True)
    ensure_groups()
    viewer.groups.add(Group.objects.get(name="ops_viewer"))
    client.force_login(viewer)
    html = client.get(reverse("admin:health_system")).content.decode()
    web = card(html, "web")
    assert "threads (fullest:" in web
    assert "<dt>waited &gt; 100 ms</dt><dd>" in web and "<dt>threads</dt><dd>2</dd>" in web


def test_probes_and_the_console_never_wait_behind_busy_api_threads(tmp_path) -> None:
    import time

    with gunicorn(threads=2, log=tmp_path / "web.log") as base, ThreadPoolExecutor(4) as executor:
        # Every API thread busy and one more request queued behind them.
        held = [executor.submit(requests.get, f"{base}/_test/hold-db?ms=3000", timeout=15) for _ in range(3)]
        time.sleep(0.5)
        for path, expected in (("/health/live", 200), ("/health/ready", 200), ("/admin/login/", 200)):
            started = time.perf_counter()
            response = requests.get(f"{base}{path}", timeout=1)
            took = time.perf_counter() - started
            assert response.status_code == expected, (path, response.content[:200])
            assert took < 0.5, (path, took)
        with requests.Session() as kept:  # a kept-alive connection is routed by each request
            assert kept.get(f"{base}/health/live", timeout=1).status_code == 200
            assert kept.get(f"{base}/health/ready", timeout=1).status_code == 200
        assert not any(h.done() for h in held)  # the API threads were busy all along
        assert [h.result().status_code for h in held] == [200, 200, 200]
