"""Typed, validated reads of the environment contract (see DESIGN.md).

Every reader raises ImproperlyConfigured naming the variable, so a bad value stops
start-up with a message an operator can act on instead of a stack trace deep in a pool.
"""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

_UNSET = object()


def read_dotenv(base_dir: Path) -> None:
    """Load `.env` when present; real environment variables always win."""
    dotenv = base_dir / ".env"
    if dotenv.is_file():
        environ.Env.read_env(str(dotenv), overwrite=False)


def _raw(name: str) -> str | None:
    value = env.str(name, default=None)
    return None if value is None or value.strip() == "" else value.strip()


def env_str(name: str, default: str | object = _UNSET) -> str:
    value = _raw(name)
    if value is None:
        if default is _UNSET:
            raise ImproperlyConfigured(f"{name} is required and is not set")
        return str(default)
    return value


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def env_ms(name: str, default_ms: int, *, minimum_ms: int = 1) -> float:
    """A duration given in milliseconds, returned in seconds."""
    return env_int(name, default_ms, minimum=minimum_ms) / 1000.0


def env_bool(name: str, default: bool) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str | object = _UNSET, *, schemes: tuple[str, ...]) -> str:
    value = env_str(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}"
        )
    return value


def env_db(name: str, default: str) -> dict:
    value = env_url(name, default, schemes=("postgres", "postgresql", "psql"))
    try:
        return environ.Env.db_url_config(value)
    except Exception as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None


def require(condition: bool, message: str) -> None:
    """Cross-variable checks (min above max and the like)."""
    if not condition:
        raise ImproperlyConfigured(message)


def env_int_list(name: str, default: list[int], *, minimum: int = 0) -> list[int]:
    values = []
    for item in env_list(name, [str(v) for v in default]):
        if not item.isdigit() or int(item) < minimum:
            raise ImproperlyConfigured(f"{name} must be a comma-separated list of integers >= {minimum}, got {item!r}")
        values.append(int(item))
    if not values:
        raise ImproperlyConfigured(f"{name} must not be empty")
    return values
