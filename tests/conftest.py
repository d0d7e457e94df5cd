from __future__ import annotations

import pytest

from tests.support.processes import celery_worker


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker consuming from the real Redis broker against the test database."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with celery_worker(log=log) as proc:
        yield proc
