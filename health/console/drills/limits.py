"""What every drill shares: its bounds (what a form may ask) and how it reports progress or refuses."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]


# Hard bounds, whatever a form says: a drill tests the service, it must never become the outage.
MAX_CONCURRENCY = 50


MAX_HOLD_MS = 5000


MAX_POOL = 50


MAX_ROUNDS = 5


SANDBOX_TIMEOUT = 3.0  # s, a call to the sandbox's control API


class DrillRefused(Exception):
    """The drill must not run here (not a sandbox, production mode); nothing was done."""
