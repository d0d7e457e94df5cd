"""The request line picks a gunicorn thread lane (config/lanes.py)."""

from __future__ import annotations

import pytest

from config.lanes import APP, OPS, PROBE, lane_of


@pytest.mark.parametrize(("head", "lane"), [
    (b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n", PROBE),
    (b"GET /health/ready?x=1 HTTP/1.1\r\n", PROBE),
    (b"GET /health/status HTTP/1.1\r\n", OPS),
    (b"GET /admin/login/?next=/admin/ HTTP/1.1\r\n", OPS),
    (b"GET /metrics HTTP/1.1\r\n", OPS),
    (b"POST /api/v1/payments HTTP/1.1\r\n", APP),
    (b"GET /health/livez HTTP/1.1\r\n", OPS),  # not a probe: no reserved probe thread for it
    (b"POST /webhooks/gateway HTTP/1.1\r\n", APP),
    (b"GET /hea", APP),  # only part of the line arrived yet
    (b"", APP),
    (b"\x16\x03\x01\x02\x00", APP),  # TLS
])
def test_lane_of(head: bytes, lane: str) -> None:
    assert lane_of(head) == lane
