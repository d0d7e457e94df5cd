"""The dead-man's switch with nobody polling: beat and the worker stop, and the web processes
themselves raise the critical health/stale alert and send its webhook, once for the episode;
when beat and a worker come back, the next run resolves it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings

from health.models import Alert, HealthCheckRun
from health.signing import HEADER
from tests.support.processes import BIN, LOG_FILES, ROOT, _stop, celery_worker, gunicorn, service_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INTERVAL = 1  # s; the switch trips after three without a run
SECRET = "dead-man-" + "5" * 32
ENV = {"HEALTH_CHECK_INTERVAL": str(INTERVAL), "HEALTH_PUBLISH_INTERVAL": "1", "HEALTH_STALE_WATCH": "true",
       "ALERT_WEBHOOK_SECRET": SECRET, "ALERT_EMAILS": ""}


def _own_redis() -> str:
    """A Redis database of this test's fleet alone: the suite's own worker (another fleet, with
    no webhook configured) must not take this fleet's notification tasks off the broker."""
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(path="/4"))


@contextlib.contextmanager
def beat(log: Path, **env: str) -> Iterator[subprocess.Popen]:
    LOG_FILES.append(log)
    out = open(log, "ab")
    proc = subprocess.Popen([str(BIN / "celery"), "-A", "config", "beat", "--loglevel=INFO",
                             f"--schedule={log.parent / 'schedule'}"],
                            cwd=ROOT, env=service_env(PROCESS_ROLE="beat", **env), stdout=out, stderr=out)
    try:
        yield proc
    finally:
        _stop(proc)


def _stale_posts(webhook) -> list[dict]:  # type: ignore[no-untyped-def]
    return [p for p in webhook.received
            if p["json"]["alert"]["component"] == "health" and p["json"]["alert"]["condition"] == "stale"]


def test_with_beat_and_the_worker_stopped_the_web_processes_raise_and_send_the_switch(webhook, tmp_path,
                                                                                       sandbox) -> None:
    env = {**ENV, "ALERT_WEBHOOK_URL": webhook.url, "PAYMENT_GATEWAY_URL": sandbox.proxy_url, "REDIS_URL": _own_redis()}
    web_log = tmp_path / "web.log"
    with gunicorn(workers=2, threads=2, log=web_log, **env) as base:
        for _ in range(4):  # the load balancer's probes start each worker's publisher; nobody reads /health/status
            requests.get(f"{base}/health/live", timeout=5)
        with beat(tmp_path / "beat.log", **env), celery_worker(log=tmp_path / "worker.log", name="deadman", **env):
            assert wait_until(lambda: HealthCheckRun.objects.count() >= 2, timeout=20), \
                (tmp_path / "worker.log").read_text()[-2000:]
        stopped = time.monotonic()

        alert = wait_until(lambda: Alert.objects.filter(component="health", condition="stale").first(),
                           timeout=8 * INTERVAL + 5, interval=0.2)
        assert alert is not None, web_log.read_text()[-2000:]
        tripped_after = time.monotonic() - stopped
        assert alert.severity == "critical" and alert.status == "open"
        posts = wait_until(lambda: _stale_posts(webhook), timeout=10)
        assert [p["json"]["event"] for p in posts] == ["raised"]
        assert posts[0]["headers"][HEADER].startswith("t=")  # signed, like every alert webhook
        # Several more intervals with both web workers looking: still one alert, one notification.
        time.sleep(4 * INTERVAL)
        assert Alert.objects.filter(component="health", condition="stale").count() == 1
        assert [p["json"]["event"] for p in _stale_posts(webhook)] == ["raised"]
        detected = [json.loads(line) for line in web_log.read_text().splitlines() if "health_stale_detected" in line]
        assert detected and all(d["role"] == "web" for d in detected)
        assert not any("/health/status" in line for line in web_log.read_text().splitlines())

        # Beat and a worker back: the next run resolves it, and the resolution is sent too.
        with beat(tmp_path / "beat-2.log", **env), celery_worker(log=tmp_path / "worker-2.log", name="deadman2", **env):
            resolved = wait_until(lambda: Alert.objects.filter(pk=alert.pk, status="resolved").first(),
                                  timeout=15, interval=0.2)
            assert resolved is not None
            assert wait_until(lambda: [p["json"]["event"] for p in _stale_posts(webhook)] == ["raised", "resolved"],
                              timeout=30)  # the new worker sends it; slow to start on a loaded machine
    print(f"dead-man's switch tripped {tripped_after:.1f} s after beat and the worker stopped "
          f"(interval {INTERVAL} s, limit {3 * INTERVAL} s)")
