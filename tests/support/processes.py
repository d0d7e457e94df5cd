"""Real service processes for tests: gunicorn and a Celery worker, on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from tests.support.tcpproxy import _free_port

ROOT = Path(__file__).resolve().parents[2]
# Log files of every process the suite started, for the final secrets scan.
LOG_FILES: list[Path] = []
BIN = Path(sys.executable).parent


def service_env(**overrides: str) -> dict[str, str]:
    """The test process's environment with the test database, plus overrides."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


@contextlib.contextmanager
def gunicorn(*, workers: int = 1, threads: int = 8, log: Path | None = None, role: str = "web",
             **env: str) -> Iterator[str]:
    port = _free_port()
    cmd = [
        str(BIN / "gunicorn"), "config.wsgi", "-c", str(ROOT / "config/gunicorn.py"),
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
    ]
    out = open(log, "ab") if log else subprocess.DEVNULL
    if log:
        LOG_FILES.append(log)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=service_env(PROCESS_ROLE=role, **env), stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health/live", proc)
        yield base
    finally:
        _stop(proc)


@contextlib.contextmanager
def celery_worker(*, concurrency: int = 4, log: Path | None = None, name: str = "test", queue: str | None = None,
                  **env: str) -> Iterator[subprocess.Popen]:
    cmd = [
        str(BIN / "celery"), "-A", "config", "worker", "--pool=threads", f"--concurrency={concurrency}",
        "--loglevel=INFO", "--without-gossip", "--without-mingle", "-n", f"{name}-{os.getpid()}@%h",
        *(["-Q", queue] if queue else []),
    ]
    out = open(log, "ab") if log else subprocess.DEVNULL
    if log:
        LOG_FILES.append(log)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=service_env(PROCESS_ROLE="worker", **env), stdout=out, stderr=out)
    try:
        yield proc
    finally:
        _stop(proc)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """The predicate's first truthy value, or its last value once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
