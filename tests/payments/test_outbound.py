"""The general outbound HTTP client: per-host pool, global in-flight cap, timeouts, stats."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config.http.outbound import OutboundClient, OutboundPoolFull
from config.http.pools import http_pool_stats
from tests.support.httpserver import Receiver


def test_per_host_connections_are_capped_and_reused() -> None:
    client = OutboundClient(max_connections=100, per_host=3, timeout=5, retries=1)
    with Receiver(delay=0.2) as receiver:
        with ThreadPoolExecutor(9) as pool:
            codes = list(pool.map(lambda _: client.post(f"{receiver.url}/hook", json={"n": 1}).status_code, range(9)))
        stats = [s for s in http_pool_stats() if s["client"] == "outbound" and s["host"].endswith(receiver.url[-5:])]
    assert codes == [200] * 9
    assert receiver.max_in_flight == 3
    assert stats[0]["max"] == 3
    assert stats[0]["connections_opened"] == 3
    assert stats[0]["requests"] == 9
    assert stats[0]["max_wait_ms"] >= 150  # the queued ones waited for a free connection


def test_global_cap_refuses_when_every_slot_stays_busy() -> None:
    client = OutboundClient(max_connections=2, per_host=10, timeout=0.3, retries=1)
    with Receiver(delay=1.0) as receiver:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(client.get, f"{receiver.url}/x", timeout=2) for _ in range(2)]
            time.sleep(0.1)
            with pytest.raises(OutboundPoolFull):
                client.get(f"{receiver.url}/x", timeout=0.3)
            assert [f.result().status_code for f in futures] == [200, 200]


def test_read_timeout_is_enforced() -> None:
    client = OutboundClient(max_connections=10, per_host=2, timeout=0.3, retries=1)
    with Receiver(delay=1.0) as receiver:
        started = time.perf_counter()
        with pytest.raises(requests.exceptions.ReadTimeout):
            client.get(f"{receiver.url}/slow")
        assert time.perf_counter() - started < 0.9


def test_retries_idempotent_requests_on_503_but_not_posts() -> None:
    client = OutboundClient(max_connections=10, per_host=2, timeout=2, retries=3)
    with Receiver(status=503) as receiver:
        assert client.get(f"{receiver.url}/a").status_code == 503
        gets = len(receiver.requests)
        assert client.post(f"{receiver.url}/b", json={}).status_code == 503
        posts = len(receiver.requests) - gets
    assert gets == 3
    assert posts == 1
