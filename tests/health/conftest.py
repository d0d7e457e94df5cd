from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from config.redis import get_redis
from health.checks.base import Check, Reading
from tests.support.processes import wait_until


@pytest.fixture(autouse=True)
def _fresh_ticks() -> Iterator[None]:
    """Tick locks of earlier tests must not swallow this test's runs."""
    redis = get_redis()
    for key in redis.scan_iter("payops:*:tick:*"):  # health runs, sweeps, prunes (config/ticks.py)
        redis.delete(key)
    yield


class StubCheck(Check):
    """A component whose reading the test sets: for the alert rules, not for measuring."""

    def __init__(self, name: str, reading: Reading | None = None, *, delay: float = 0.0,
                 budget: float | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.reading = reading or Reading()
        self.delay = delay
        self.budget = budget

    def measure(self) -> Reading:
        if self.delay:
            time.sleep(self.delay)
        r = self.reading
        return Reading(status=r.status, message=r.message, figures=dict(r.figures),
                       utilisation=dict(r.utilisation), problems=list(r.problems), levels=dict(r.levels))


class Ticker:
    """Distinct ticks for runs made by hand, `interval` seconds apart, starting now; each time
    5 s into its tick, so a test may add a few seconds and stay in the same tick."""

    def __init__(self, interval: int = 30) -> None:
        self.interval = interval
        now = timezone.now()
        self.now = now - timedelta(seconds=now.timestamp() % interval - 5)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=self.interval)
        return self.now


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def staff(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user(username="ops", password="pw-ops-1", is_staff=True)


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks queued after commit run in this process (locmem mail, this process's settings)."""
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = False


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                receiver.received.append({"json": json.loads(body), "headers": dict(self.headers), "raw": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def other_web_doc(predicate: Callable[[dict[str, Any]], Any] = lambda doc: True,
                  timeout: float = 10.0) -> dict[str, Any] | None:
    """The published document of a web process other than this one that satisfies `predicate`."""
    from health.selectors import fleet_pool_stats

    def find() -> dict[str, Any] | None:
        for doc in fleet_pool_stats():
            if doc["role"] == "web" and doc["pid"] != os.getpid() and predicate(doc):
                return doc
        return None

    return wait_until(find, timeout=timeout, interval=0.1)
