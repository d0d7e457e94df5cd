"""How workers hold and get back tasks on the Redis broker (kombu's transport options)."""

from __future__ import annotations

import socket
from typing import Any

from config.env import require


def broker_transport_options(*, visibility_timeout: int) -> dict[str, Any]:
    """CELERY_BROKER_TRANSPORT_OPTIONS for a visibility timeout of `visibility_timeout` s."""
    return {
        "visibility_timeout": visibility_timeout,
        # Every worker looks for timed-out tasks every this many s (kombu's default, 10 s x a
        # throttle of 10, would add up to 100 s to a redelivery); a restarted worker looks at once.
        "unacked_restore_interval": max(1, min(10, visibility_timeout // 10)),  # s
        "unacked_restore_throttle": 1,
        # kombu waits forever on a Redis that hangs (stopped, stuck) by default: a web process
        # queueing a settlement would hold the payment's request. Above kombu's 1 s BRPOP.
        "socket_timeout": 2.0,  # s
        "socket_connect_timeout": 2.0,  # s
        # kombu 5.7 drops a worker's BRPOP connection when no reply came for 26 s; if Redis was
        # only slow, it then runs that BRPOP and hands a task to a connection nobody reads: the
        # task is lost. The kernel tells a dead Redis from a slow one instead: data
        # unacknowledged for 30 s or 3 keepalive probes unanswered end the connection.
        "health_check_interval": 0,
        "socket_keepalive": True,
        "socket_keepalive_options": {
            option: value for option, value in ((getattr(socket, "TCP_KEEPIDLE", None), 10),
                                                (getattr(socket, "TCP_KEEPINTVL", None), 5),
                                                (getattr(socket, "TCP_KEEPCNT", None), 3),
                                                (getattr(socket, "TCP_USER_TIMEOUT", None), 30_000))
            if option is not None
        },
    }


def visibility_timeout_check(*, visibility_timeout: int, task_time_limit: int, settle_delays: list[int],
                             claim_stale_after: float) -> None:
    """Refuses a visibility timeout a task could outlast: a worker holds a task with a countdown
    from the moment it takes it, then runs it; both count against the visibility timeout, which
    restarts nothing when it runs out but delivers the task a second time."""
    longest_countdown = max(max(settle_delays), claim_stale_after)  # s
    require(
        visibility_timeout > task_time_limit + longest_countdown,
        f"CELERY_VISIBILITY_TIMEOUT ({visibility_timeout} s) must exceed CELERY_TASK_TIME_LIMIT "
        f"({task_time_limit} s) plus the longest countdown a worker holds ({longest_countdown:.0f} s: the "
        "largest of PAYMENT_SETTLE_DELAYS, or PAYMENT_DEADLINE + 10 s), or a task still waiting or running "
        "is delivered a second time",
    )
