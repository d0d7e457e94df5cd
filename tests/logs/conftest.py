"""CloudWatch stand-ins on loopback: moto's server (real HTTP), a closed port and a black hole."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import override_settings

from config.logs.formatter import JsonFormatter
from config.logs.handler import BoundedCloudWatchHandler
from config.logs.redaction import RedactionFilter
from tests.logs.support import AWS_ENV, BIN, BlackHole, free_port


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server as a real subprocess on a free loopback port."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise TimeoutError("moto_server did not answer within 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def closed_endpoint() -> str:
    """A loopback port nobody listens on: every connection is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def log_group() -> str:
    return f"/payops/test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cloudwatch(aws_env: None) -> Iterator[Any]:
    """Builds handlers through the real `make_handler` with settings overridden; closes them after."""
    from config.logs import cloudwatch as module

    built: list[BoundedCloudWatchHandler] = []
    saved = (module._active, module._setup_error)

    def build(*, endpoint: str, group: str, **overrides: Any) -> BoundedCloudWatchHandler:
        values = {
            "CLOUDWATCH_LOG_GROUP": group,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
            "CLOUDWATCH_TIMEOUT": 2.0,
            "CLOUDWATCH_SEND_INTERVAL": 0.1,
            "CLOUDWATCH_FLUSH_TIMEOUT": 2.0,
            "PROCESS_ROLE": "web",
            **overrides,
        }
        from config.logs.cloudwatch import make_handler

        with override_settings(**values):
            handler = make_handler()
        assert isinstance(handler, BoundedCloudWatchHandler)
        handler.setFormatter(JsonFormatter(role=values["PROCESS_ROLE"]))
        handler.addFilter(RedactionFilter())
        built.append(handler)
        return handler

    yield build
    for handler in built:
        handler.close()
    # make_handler records the process's handler for handler_stats(); this one was a test's.
    module._active, module._setup_error = saved
