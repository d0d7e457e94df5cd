"""Queued records are sent when a process stops: plain exit, gunicorn worker, Celery worker."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import requests

from tests.logs.support import json_lines, run_django, wait_for_events
from tests.support.processes import celery_worker, gunicorn

# Far longer than any test: a record that reaches CloudWatch got there by the shutdown flush.
NEVER = {"CLOUDWATCH_SEND_INTERVAL": "600000", "CLOUDWATCH_FLUSH_TIMEOUT": "5000"}
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def test_a_process_that_exits_flushes_what_it_logged(moto_endpoint: str, log_group: str) -> None:
    code = """
import logging, os, sys
from config.logs.events import log_event
logger = logging.getLogger("payments.services")
for i in range(50):
    log_event(logger, "payment_unknown_outcome", "outcome unknown", level=logging.WARNING, payment_id="pay_%d" % i)
print("PID", os.getpid(), file=sys.stderr)
"""
    result = run_django(code, NEVER, CLOUDWATCH_LOG_GROUP=log_group, AWS_ENDPOINT_URL=moto_endpoint)
    assert result.returncode == 0, result.stderr
    pid = result.stderr.split("PID ")[1].split()[0]
    streams = wait_for_events(moto_endpoint, log_group, 50, timeout=5)
    messages = streams[f"{socket.gethostname()}/web/{pid}"]
    assert [json.loads(m)["payment_id"] for m in messages] == [f"pay_{i}" for i in range(50)]


def test_a_gunicorn_worker_flushes_on_stop(moto_endpoint: str, log_group: str, tmp_path: Path) -> None:
    env = {"CLOUDWATCH_LOG_GROUP": log_group, "AWS_ENDPOINT_URL": moto_endpoint, **NEVER, **AWS}
    with gunicorn(workers=1, threads=2, log=tmp_path / "web.log", **env) as base:
        # Django logs a 404 at WARNING through `django.request`: a record from a real request.
        assert requests.get(f"{base}/no-such-page-for-logs", timeout=10).status_code == 404
        time.sleep(0.2)
        assert wait_for_events(moto_endpoint, log_group, 1, timeout=0.5) == {}  # still queued
    streams = wait_for_events(moto_endpoint, log_group, 1, timeout=5)
    assert len(streams) == 1, (tmp_path / "web.log").read_text()[-2000:]
    (stream, messages), = streams.items()
    host, role, pid = stream.split("/")
    assert (host, role) == (socket.gethostname(), "web") and int(pid) != os.getpid()
    records = [json.loads(m) for m in messages]
    assert any("/no-such-page-for-logs" in r["message"] for r in records), records


def test_a_celery_worker_keeps_our_logging_and_flushes_on_stop(moto_endpoint: str, log_group: str,
                                                              tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    env = {"CLOUDWATCH_LOG_GROUP": log_group, "AWS_ENDPOINT_URL": moto_endpoint,
           "REDIS_URL": "redis://127.0.0.1:6379/5", **NEVER, **AWS}
    with celery_worker(concurrency=1, log=log, **env):
        deadline = time.monotonic() + 30
        while " ready." not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    printed = json_lines(log.read_text())
    # Celery did not replace our handlers: its own records came out as our JSON...
    ready = [r for r in printed if r["message"].endswith(" ready.")]
    assert ready and ready[0]["role"] == "worker", log.read_text()[-2000:]
    # ...and went to CloudWatch too, sent by the shutdown flush.
    streams = wait_for_events(moto_endpoint, log_group, 1, timeout=5)
    (stream, messages), = streams.items()
    assert stream.split("/")[:2] == [socket.gethostname(), "worker"]
    assert any(json.loads(m)["message"].endswith(" ready.") for m in messages)
