"""Every Procfile line, as a platform starts it, from a fresh clone with only the documented
environment: release, then web, worker and beat under honcho; a payment is taken, a health run
lands, beat writes its schedule, and all three stop cleanly."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from tests.support.databases import scratch_database
from tests.support.processes import ROOT, wait_until
from tests.support.redisserver import redis_server
from tests.support.tcpproxy import _free_port

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# Start-up figures of the last run, printed at the end of the test (docs, the note).
TIMES: dict[str, float] = {}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The committed HEAD of this checkout, cloned as a platform's build would see it."""
    target = tmp_path / "repo"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    subprocess.run(["git", "checkout", "--quiet", "--detach", head], cwd=target, check=True)
    assert not (target / "var").exists(), "a fresh clone has no var/ folder"
    return target


@pytest.fixture
def database() -> Iterator[str]:
    """An empty database of its own, which `release` migrates."""
    with scratch_database("procfile") as url:
        yield url


def _documented_env(*, database_url: str, redis_url: str, gateway_url: str, port: int) -> dict[str, str]:
    # Only what .env.example documents (production mode: DJANGO_DEBUG unset), the venv on PATH
    # as a platform's buildpack puts it, and nothing of the suite's own environment.
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PORT": str(port),
        "GUNICORN_HOST": "127.0.0.1",  # a shared machine: loopback only
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PAYMENT_GATEWAY_URL": gateway_url,
        "PAYMENT_GATEWAY_API_KEY": "sk_test_procfile",
        "HEALTH_CHECK_INTERVAL": "2",
        "HEALTH_PUBLISH_INTERVAL": "1",
        "LOG_LEVEL": "WARNING",
    }


def _honcho(clone: Path, env: dict[str, str], *processes: str, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([str(BIN / "honcho"), "--no-colour", "start", *processes], cwd=clone, env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _scalar(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def _left_running(clone: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == clone:
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_procfile_processes_run_from_a_fresh_clone(clone: Path, database: str, sandbox, tmp_path: Path) -> None:
    port = _free_port()
    with redis_server(tmp_path) as redis_url:
        env = _documented_env(database_url=database, redis_url=redis_url, gateway_url=sandbox.proxy_url, port=port)
        log = tmp_path / "honcho.log"

        # A `python` first on release's PATH notes the role each of its steps runs under.
        shim, roles = tmp_path / "shim", tmp_path / "roles.txt"
        shim.mkdir()
        (shim / "python").write_text(f'#!/bin/sh\necho "$PROCESS_ROLE $2" >> {roles}\nexec {BIN / "python"} "$@"\n')
        (shim / "python").chmod(0o755)
        started = time.monotonic()
        release = _honcho(clone, {**env, "PATH": f"{shim}{os.pathsep}{env['PATH']}"}, "release", log=log)
        assert release.wait(timeout=60) == 0, log.read_text()[-3000:]
        TIMES["release_s"] = time.monotonic() - started
        assert (clone / "staticfiles" / "staticfiles.json").is_file(), "collectstatic ran in release"
        assert _scalar(database, "SELECT count(*) FROM django_migrations") > 0, "migrate ran in release"
        assert roles.read_text().split("\n")[:2] == ["release collectstatic", "release migrate"]

        started = time.monotonic()
        fleet = _honcho(clone, env, "web", "worker", "beat", log=log)
        base = f"http://127.0.0.1:{port}"
        try:
            def ready() -> bool:
                assert fleet.poll() is None, log.read_text()[-3000:]
                try:
                    return requests.get(f"{base}/health/ready", timeout=1).status_code == 200
                except requests.RequestException:
                    return False

            assert wait_until(ready, timeout=30, interval=0.1), log.read_text()[-3000:]
            TIMES["web_ready_s"] = time.monotonic() - started

            assert wait_until(lambda: _scalar(database, "SELECT count(*) FROM health_healthcheckrun"),
                              timeout=30, interval=0.2), log.read_text()[-3000:]
            TIMES["first_health_run_s"] = time.monotonic() - started
            schedule = list((clone / "var").glob("celerybeat-schedule*"))
            assert schedule and all(f.stat().st_size > 0 for f in schedule), "beat wrote its schedule"

            made = subprocess.run([str(BIN / "python"), "manage.py", "create_api_key", "procfile"], cwd=clone,
                                  env=env, capture_output=True, text=True, timeout=30)
            assert made.returncode == 0, made.stderr
            key = made.stdout.strip().splitlines()[-1]
            # A platform's router terminates TLS and says so; production redirects plain HTTP.
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex,
                       "X-Forwarded-Proto": "https"}
            answer = requests.post(f"{base}/api/v1/payments", headers=headers, timeout=30,
                                   json={"amount": 1250, "currency": "eur", "payment_method": "pm_card_visa"})
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "succeeded"
            TIMES["payment_taken_s"] = time.monotonic() - started
        finally:
            stopping = time.monotonic()
            # As a platform stops a dyno: honcho passes SIGTERM on to each process and waits.
            fleet.send_signal(signal.SIGTERM)
            try:
                code = fleet.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(fleet.pid, signal.SIGKILL)
                fleet.wait()
                raise
            TIMES["stop_s"] = time.monotonic() - stopping

    output = log.read_text()
    # honcho answers its own SIGTERM with 143 once every process has ended, without a SIGKILL.
    assert code == 143 and "SIGKILL" not in output, output[-3000:]
    assert "Shutting down: Master" in output, "gunicorn finished its requests and stopped"
    assert "Warm shutdown" in output, "the worker finished its tasks and stopped"
    assert not _left_running(clone), "a process of the clone outlived honcho"
    assert wait_until(lambda: _scalar(database, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                                 "current_database() AND pid <> pg_backend_pid()") == 0,
                      timeout=10), "every process closed its database connections"
    print("procfile times: " + ", ".join(f"{k}={v:.1f}" for k, v in TIMES.items()))
