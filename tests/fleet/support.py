"""What every bounded fleet scenario needs from the pytest session: its database and Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections


def fleet_args(tmp_path: Path) -> dict[str, Any]:
    """A Fleet on the test session's Redis database, with its logs in the test's tmp_path."""
    return {"redis_db": int(urlsplit(settings.REDIS_URL).path.strip("/") or 0), "log_dir": tmp_path / "fleet"}


def database() -> str:
    """The pytest test database: the fleet's processes use it as theirs."""
    return connections["default"].settings_dict["NAME"]
