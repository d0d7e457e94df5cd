"""A pooled connection lent out longer than DB_LEAK_THRESHOLD is reported with the view or task
that took it: in the process's published pool figures, in its log, as a warning alert from the
health run, and on System Health; it goes away once the connection is back."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection
from django.urls import reverse

from config.postgres import leaks
from health.models import Alert
from health.services.runs import health_check_run
from tests.health.conftest import other_web_doc
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def _leaks(doc) -> list:  # type: ignore[no-untyped-def]
    return (doc.get("db") or {}).get("leaks") or []


def test_a_connection_held_past_the_threshold_is_reported_with_its_view(admin_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "web.log"
    with gunicorn(workers=1, threads=4, log=log, DB_LEAK_THRESHOLD="700", HEALTH_PUBLISH_INTERVAL="1",
                  HEALTH_CHECK_INTERVAL="2") as base, ThreadPoolExecutor(1) as executor:
        assert requests.get(f"{base}/_test/hold-db?ms=1", timeout=10).status_code == 200  # starts its publisher
        assert other_web_doc(lambda d: d.get("db"), timeout=10) is not None
        assert not any(_leaks(d) for d in [other_web_doc(timeout=5)])  # a short hold is no leak

        holding = executor.submit(requests.get, f"{base}/_test/hold-db?ms=4500", timeout=15)
        doc = other_web_doc(lambda d: _leaks(d), timeout=5)
        assert doc is not None, log.read_text()[-2000:]
        (leak,) = _leaks(doc)
        assert leak["where"] == "view test_hold_db" and leak["held_s"] > 0.7

        health_check_run()
        alert = Alert.objects.get(component="database", condition="connection_leak")
        assert alert.severity == "warning" and "test_hold_db" in alert.message
        page = admin_client.get(reverse("admin:health_system_live")).content.decode()
        assert "HELD TOO LONG" in page and "view test_hold_db" in page

        assert holding.result().status_code == 200
        # Back in the pool: the next publication has no leak.
        assert other_web_doc(lambda d: d.get("db") and not _leaks(d) and d["at"] > time.time() - 1, timeout=5)
    logged = [json.loads(line) for line in log.read_text().splitlines() if '"db_connection_leak"' in line]
    assert len(logged) == 1 and logged[0]["where"] == "view test_hold_db"  # once per lend, not per publication


def test_a_task_holding_a_connection_is_named_after_the_task() -> None:
    connection.close()
    leaks.holder_set("task payments.tasks.payment_settle_sweep")
    try:
        connection.ensure_connection()
        held = [leak for leak in leaks.leaks(threshold=0) if leak["where"].startswith("task ")]
        assert [leak["where"] for leak in held] == ["task payments.tasks.payment_settle_sweep"]
        connection.close()
        assert not [leak for leak in leaks.leaks(threshold=0) if leak["where"].startswith("task ")]
    finally:
        leaks.holder_clear()
