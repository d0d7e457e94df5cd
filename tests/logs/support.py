"""Helpers of the logging tests: reading CloudWatch back, subprocesses with real settings."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BlackHole:
    """Accepts connections and never answers, like an endpoint whose responses stall."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self._conns:
            conn.close()


def isolated_logger(name: str, *handlers: logging.Handler) -> logging.Logger:
    """A logger of its own (no propagation), so a test's handlers see only its records."""
    logger = logging.getLogger(f"tests.logs.{name}.{uuid.uuid4().hex[:8]}")
    logger.handlers = list(handlers)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def logs_client(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "logs", region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def stored_events(endpoint: str, group: str) -> dict[str, list[str]]:
    """Every stored message of a log group, by stream name."""
    client = logs_client(endpoint)
    streams = client.describe_log_streams(logGroupName=group)["logStreams"]
    return {
        stream["logStreamName"]: [
            event["message"]
            for event in client.get_log_events(
                logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
            )["events"]
        ]
        for stream in streams
    }


def wait_for_events(endpoint: str, group: str, count: int, timeout: float = 10.0) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = stored_events(endpoint, group)
        except Exception:  # the group does not exist yet
            found = {}
        if sum(map(len, found.values())) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def run_django(code: str, env: dict[str, str] | None = None, **more_env: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process with the test settings set up (real LOGGING)."""
    full_env = dict(os.environ)
    full_env.update(AWS_ENV)
    full_env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    full_env.update(more_env)
    script = "import django\ndjango.setup()\n" + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines
