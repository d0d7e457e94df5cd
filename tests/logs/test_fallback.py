"""CloudWatch away or slow: requests keep their latency, stdout keeps every record, losses are counted."""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from collections.abc import Callable

import pytest

from config.logs.emf import METRICS_LOGGER, emit_metrics
from config.logs.events import log_event
from config.logs.formatter import JsonFormatter
from config.logs.redaction import RedactionFilter
from tests.logs.support import isolated_logger, json_lines, run_django

REQUESTS = 200
WORK_S = 0.003  # the request's own work: a database query, a gateway call


def _request_like_loop(logger: logging.Logger) -> list[float]:
    """200 requests, each doing its work and logging one record, like a payment view."""
    latencies = []
    for i in range(REQUESTS):
        started = time.perf_counter()
        time.sleep(WORK_S)
        log_event(logger, "payment_timeout", "gateway call timed out", level=logging.WARNING,
                  payment_id=f"pay_{i:024d}", attempt=1, idempotency_key=f"pay_{i}-create", duration_ms=3)
        latencies.append(time.perf_counter() - started)
    return latencies


def _stdout_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)  # pytest's captured stdout during the test
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter())
    return handler


def _measure(cloudwatch_handler: logging.Handler, capsys: pytest.CaptureFixture[str]) -> tuple[float, list[dict]]:
    logger = isolated_logger("latency", _stdout_handler(), cloudwatch_handler)
    capsys.readouterr()
    median = statistics.median(_request_like_loop(logger))
    printed = [r for r in json_lines(capsys.readouterr().out) if r.get("category") == "payment_timeout"]
    return median, printed


@pytest.fixture
def baseline(cloudwatch, moto_endpoint: str, log_group: str, capsys: pytest.CaptureFixture[str]) -> float:
    """The median request latency with CloudWatch healthy."""
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    _measure(handler, capsys)  # warm-up: imports, the sender thread, the first connection
    median, printed = _measure(handler, capsys)
    assert len(printed) == REQUESTS
    assert handler.flush_within(5.0)
    assert handler.stats()["sent"] == 2 * REQUESTS and handler.stats()["dropped"] == 0
    return median


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_cloudwatch_unreachable_costs_no_latency(baseline: float, cloudwatch, closed_endpoint: str, log_group: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    handler = cloudwatch(endpoint=closed_endpoint, group=log_group, CLOUDWATCH_QUEUE_SIZE=50)
    median, printed = _measure(handler, capsys)
    assert median <= baseline * 1.10, f"normal {baseline * 1000:.2f} ms, CloudWatch down {median * 1000:.2f} ms"
    assert len(printed) == REQUESTS
    assert [r["payment_id"] for r in printed] == [f"pay_{i:024d}" for i in range(REQUESTS)]
    assert _wait_for(lambda: handler.stats()["errors"] >= 1)
    stats = handler.stats()
    assert stats["dropped"] >= REQUESTS - 50  # the queue holds 50, the rest is dropped and counted
    assert stats["sent"] == 0 and stats["queued"] <= 50
    assert stats["state"] == "degraded" and stats["last_error"] == "EndpointConnectionError"
    assert stats["last_error_at"] is not None and stats["last_success_at"] is None


def test_cloudwatch_answering_slowly_costs_no_latency(baseline: float, cloudwatch, blackhole, log_group: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    handler = cloudwatch(endpoint=f"http://127.0.0.1:{blackhole.port}", group=log_group,
                         CLOUDWATCH_QUEUE_SIZE=50, CLOUDWATCH_TIMEOUT=0.5, CLOUDWATCH_FLUSH_TIMEOUT=0.5)
    logger = isolated_logger("slow-warmup", handler)
    logger.info("first record: the sender connects and waits for an answer that never comes")
    assert _wait_for(lambda: blackhole.accepted >= 1)
    median, printed = _measure(handler, capsys)
    assert median <= baseline * 1.10, f"normal {baseline * 1000:.2f} ms, CloudWatch slow {median * 1000:.2f} ms"
    assert len(printed) == REQUESTS
    assert handler.stats()["dropped"] >= REQUESTS - 50
    assert _wait_for(lambda: handler.stats()["errors"] >= 1)
    assert handler.stats()["last_error"] == "ReadTimeoutError"
    # a flush while CloudWatch hangs returns within its bound, and says it did not finish
    started = time.monotonic()
    assert handler.flush_within(0.5) is False
    assert time.monotonic() - started < 1.0


def test_metrics_and_records_keep_flowing_to_stdout_when_cloudwatch_is_down(cloudwatch, closed_endpoint: str,
                                                                            log_group: str,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    handler = cloudwatch(endpoint=closed_endpoint, group=log_group)
    stdout = _stdout_handler()
    metrics = logging.getLogger(METRICS_LOGGER)
    metrics.addHandler(stdout)
    metrics.addHandler(handler)
    try:
        capsys.readouterr()
        emit_metrics(None, {"pool": "db"}, {"PoolUtilisation": (97.0, "Percent")})
    finally:
        metrics.removeHandler(stdout)
        metrics.removeHandler(handler)
    (printed,) = json_lines(capsys.readouterr().out)
    assert printed["PoolUtilisation"] == 97.0 and "_aws" in printed


def test_a_process_exits_promptly_with_cloudwatch_down(closed_endpoint: str, log_group: str) -> None:
    """The real configuration: every record on stdout, exit bounded by CLOUDWATCH_FLUSH_TIMEOUT."""
    code = """
import logging, time
from config.logs.events import log_event
logger = logging.getLogger("payments.api")
started = time.perf_counter()
for i in range(200):
    log_event(logger, "payment_connection_error", "gateway refused the connection", level=logging.ERROR,
              payment_id="pay_%d" % i, attempt=1)
print("LOGGED %.4f" % (time.perf_counter() - started), file=__import__("sys").stderr)
"""
    started = time.monotonic()
    result = run_django(code, CLOUDWATCH_LOG_GROUP=log_group, AWS_ENDPOINT_URL=closed_endpoint,
                        CLOUDWATCH_FLUSH_TIMEOUT="1000", CLOUDWATCH_TIMEOUT="1000")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    printed = [r for r in json_lines(result.stdout) if r.get("category") == "payment_connection_error"]
    assert [r["payment_id"] for r in printed] == [f"pay_{i}" for i in range(200)]
    assert float(result.stderr.split("LOGGED ")[1].split()[0]) < 0.5  # 200 records, no waiting on CloudWatch
    unavailable = [r for r in json_lines(result.stdout) if r.get("category") == "cloudwatch_unavailable"]
    assert len(unavailable) <= 1  # once per outage, not once per batch
    assert elapsed < 15, f"exit took {elapsed:.1f} s"
    assert json.dumps(printed)  # every line was valid JSON
