"""What every bounded fleet scenario needs from the pytest session: its database and Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections


def fleet_args(tmp_path: Path) -> dict[str, Any]:
    """A Fleet on a Redis database of its own (the one after the session's), with its logs in
    the test's tmp_path. Never the session's own: the session's Celery worker consumes that
    broker with the session's gateway, so a settlement it took from the fleet would charge a
    card at a gateway the fleet's ledger check never reads (the crossed intents of issue #15)."""
    session_db = int(urlsplit(settings.REDIS_URL).path.strip("/") or 0)
    # The next number, or the one before for the last (never wrapping round to 0, `make run`'s).
    return {"redis_db": session_db + 1 if session_db < 15 else session_db - 1, "log_dir": tmp_path / "fleet"}


def database() -> str:
    """The pytest test database: the fleet's processes use it as theirs."""
    return connections["default"].settings_dict["NAME"]
