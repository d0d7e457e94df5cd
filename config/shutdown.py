"""Whether this process was told to stop.

From the moment a web worker receives its stop signal it finishes what it already took, and
readiness answers 503 for whatever still reaches it, so the load balancer stops sending new
requests while the last payments complete instead of after their connections break.
"""

from __future__ import annotations

import threading

_stopping = threading.Event()


def shutdown_begin() -> None:
    """Called from the process's stop signal handler: cheap, never blocks."""
    _stopping.set()


def shutting_down() -> bool:
    return _stopping.is_set()


def shutdown_cancel() -> None:
    """Tests only: a process of the suite that played a stopping one serves again."""
    _stopping.clear()
