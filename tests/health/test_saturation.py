"""Real saturation of a real pool: a web process holds connections through /_test/hold-db,
publishes its figures, and the check turns them into alerts."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from health.checks import DatabaseCheck
from health.models import Alert
from health.services.runs import health_check_run
from tests.health.conftest import other_web_doc
from tests.support.processes import gunicorn

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def web_pool(predicate):  # type: ignore[no-untyped-def]
    """The published database pool figures of the web process under test, once `predicate` holds."""
    doc = other_web_doc(lambda d: d["db"] is not None and predicate(d["db"]))
    return doc["db"] if doc else None


def test_holding_17_then_19_of_20_warns_then_criticals_exhaustion_errors_and_release_resolves(tmp_path,
                                                                                              ticker) -> None:
    env = {"DB_MAX_CONNECTIONS": "20", "DB_MIN_CONNECTIONS": "1", "DB_CONNECTION_TIMEOUT": "1000",
           "HEALTH_PUBLISH_INTERVAL": "1", "HEALTH_CHECK_INTERVAL": "2"}
    check = DatabaseCheck()

    def run() -> None:
        health_check_run(now=ticker(), checks=[check])

    def pool_alert() -> Alert:
        return Alert.objects.get(component="database", condition="pool_utilisation")

    with gunicorn(threads=24, log=tmp_path / "web.log", **env) as base, ThreadPoolExecutor(24) as executor:
        release_at = time.monotonic() + 10

        def hold(count: int) -> list[Future]:
            ms = int((release_at - time.monotonic()) * 1000)
            return [executor.submit(requests.get, f"{base}/_test/hold-db?ms={ms}", timeout=30) for _ in range(count)]

        holders = hold(17)
        assert web_pool(lambda db: db["in_use"] == 17), (tmp_path / "web.log").read_text()[-2000:]
        run()
        alert = pool_alert()
        assert (alert.severity, alert.status) == ("warning", "open")
        assert "85%" in alert.message

        holders += hold(2)
        assert web_pool(lambda db: db["in_use"] == 19)
        run()
        assert (pool_alert().pk, pool_alert().severity) == (alert.pk, "critical")

        holders += hold(1)
        assert web_pool(lambda db: db["in_use"] == 20)
        surplus = requests.get(f"{base}/_test/hold-db?ms=10", timeout=10)  # waits its 1 s, then 503
        assert surplus.status_code == 503
        assert web_pool(lambda db: db["recent"]["requests_errors"] >= 1)
        run()
        exhausted = Alert.objects.get(component="database", condition="pool_exhausted")
        assert (exhausted.severity, exhausted.status) == ("error", "open")
        assert "timed out" in exhausted.message
        assert pool_alert().severity == "critical"

        assert all(h.result().status_code == 200 for h in holders)
        # Released, and the timeout has left the recent window (check + publish interval).
        assert web_pool(lambda db: db["in_use"] == 0 and db["recent"]["requests_errors"] == 0)
        run()
        assert {a.condition: (a.status, a.absent_checks) for a in Alert.objects.filter(component="database")
                if a.condition in ("pool_utilisation", "pool_exhausted")} == {
            "pool_utilisation": ("open", 1), "pool_exhausted": ("open", 1)}
        run()
    for condition in ("pool_utilisation", "pool_exhausted"):
        alert = Alert.objects.get(component="database", condition=condition)
        assert alert.status == "resolved" and alert.resolved_at is not None
