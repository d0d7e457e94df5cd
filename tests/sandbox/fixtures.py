"""Fixtures for the sandbox tests: one real gateway + proxy per module, reset per test.

Imported by each test module rather than living in a conftest.py, so the tests also run
with `--noconftest` (and `-p no:django`) when a project-wide conftest or pytest-django
configuration needs services these tests do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from sandbox.harness import SandboxStack

API_KEY = "sk_test_sandbox_tests"


@pytest.fixture(scope="module")
def stack() -> Iterator[SandboxStack]:
    with SandboxStack() as running:
        yield running


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> None:
    if "stack" in request.fixturenames:
        sandbox: SandboxStack = request.getfixturevalue("stack")
        sandbox.reset(upstream=True)
        sandbox.set_fast(False)


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no environment proxies for loopback
    session.auth = (API_KEY, "")
    return session


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with new_session() as s:
        yield s


@pytest.fixture
def make_session() -> Iterator[Callable[[], requests.Session]]:
    """For tests that need several independent connection pools."""
    made: list[requests.Session] = []

    def make() -> requests.Session:
        made.append(new_session())
        return made[-1]

    yield make
    for s in made:
        s.close()
