"""A scratch PostgreSQL database beside the test database, for tests that run manage.py or the
Procfile against a database of their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from django.conf import settings


@contextlib.contextmanager
def scratch_database(suffix: str) -> Iterator[str]:
    """An empty database named after the test database plus `suffix`; its URL; dropped after."""
    db = settings.DATABASES["default"]
    name = f"{db['NAME']}_{suffix}"
    admin = dict(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
