"""Which of a gunicorn worker's thread pools serves a request, read from its first bytes.

Probes, the console and the payment API each get threads of their own (bulkheads), so that
payments waiting on a slow gateway never hold the threads a load balancer's probe or an
operator's page needs: a probe that waits behind payments fails, and a few failed liveness
probes restart a container with every payment in it mid-flight.
"""

from __future__ import annotations

PROBE = "probe"  # /health/live, /health/ready: answered on threads nothing else uses
OPS = "ops"  # the console, /health/status, /metrics, static files
APP = "app"  # the payment API, gateway events, anything else

PROBE_PATHS = frozenset({b"/health/live", b"/health/ready"})
OPS_PREFIXES = (b"/admin/", b"/admin", b"/health/", b"/metrics", b"/static/")
PEEK_BYTES = 256  # a request line with a path this long is classified by its start


def lane_of(head: bytes) -> str:
    """The lane of a request whose first bytes are `head` (APP when unreadable or partial)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) < 2:
        return APP
    path = parts[1].split(b"?", 1)[0]
    if path in PROBE_PATHS:
        return PROBE
    if path.startswith(OPS_PREFIXES):
        return OPS
    return APP
