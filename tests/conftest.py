from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings

from sandbox.harness import SandboxStack
from tests.support.processes import celery_worker


@pytest.fixture(scope="session", autouse=True)
def _session_log(tmp_path_factory) -> Iterator[None]:
    """Everything the suite logs, as our handlers emit it, for the final secrets scan."""
    import logging

    from tests.support.processes import LOG_FILES

    path = tmp_path_factory.mktemp("logs") / "suite.jsonl"
    root = logging.getLogger()
    stdout = next((h for h in root.handlers if getattr(h, "stream", None) is not None), None)
    handler = logging.FileHandler(path)
    if stdout is not None:
        handler.setFormatter(stdout.formatter)
        for log_filter in stdout.filters:
            handler.addFilter(log_filter)
    root.addHandler(handler)
    LOG_FILES.append(path)
    yield
    root.removeHandler(handler)
    handler.close()


@pytest.fixture(scope="session", autouse=True)
def _close_pool_before_test_database_teardown(django_db_setup, django_db_blocker) -> Iterator[None]:
    from django.db import connections

    # A pool created before the test database existed points at the real one; Django's
    # test set-up does not replace it, so drop it here and let it be made anew.
    connection = connections["default"]
    pool = connection._connection_pools.get("default")
    if pool is not None and pool.kwargs.get("dbname") != connection.settings_dict["NAME"]:
        connection.close_pool()
    yield
    from django.db import connections

    from config.postgres.answers_pool import answers_pool_close

    # The pools keep connections to the test database open; they must go before the database.
    with django_db_blocker.unblock():
        connections["default"].close_pool()
        answers_pool_close()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[SandboxStack]:
    """localstripe behind the idempotency/fault proxy, on loopback ports of its own."""
    from payments.gateway import reset_gateway

    with SandboxStack(log_dir=tmp_path_factory.mktemp("sandbox")) as stack:
        settings.PAYMENT_GATEWAY_URL = stack.proxy_url
        reset_gateway()
        yield stack
    reset_gateway()


@pytest.fixture
def gateway(sandbox: SandboxStack) -> Iterator[SandboxStack]:
    """A clean gateway and a closed breaker for one test."""
    from payments.gateway import get_gateway

    sandbox.reset(upstream=True)
    sandbox.set_fast(False)
    get_gateway().breaker.reset()
    get_gateway().limiter.reset()  # a test's slow calls must not shrink the next one's limit
    yield sandbox
    sandbox.clear()
    get_gateway().breaker.reset()
    get_gateway().limiter.reset()


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, sandbox, tmp_path_factory):
    """A real Celery worker consuming from the real Redis broker against the test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with celery_worker(log=log, PAYMENT_GATEWAY_URL=sandbox.proxy_url) as proc:
        proc.log_path = log  # type: ignore[attr-defined]  # where a test reads which tasks it ran
        yield proc
