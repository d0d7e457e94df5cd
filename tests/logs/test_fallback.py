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
from config.logs.handler import BoundedCloudWatchHandler
from config.logs.redaction import RedactionFilter
from tests.logs.support import isolated_logger, json_lines, run_django

REQUESTS = 200
WORK_S = 0.003  # the request's own work: a database query, a gateway call


def _request(logger: logging.Logger, i: int) -> float:
    """One request-like iteration: its own work, then one record, as a payment view logs."""
    started = time.perf_counter()
    time.sleep(WORK_S)
    log_event(logger, "payment_timeout", "gateway call timed out", level=logging.WARNING,
              payment_id=f"pay_{i:024d}", attempt=1, idempotency_key=f"pay_{i}-create", duration_ms=3)
    return time.perf_counter() - started


def _stdout_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)  # pytest's captured stdout during the test
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter())
    return handler


def _compare(normal: BoundedCloudWatchHandler, degraded: BoundedCloudWatchHandler,
             capsys: pytest.CaptureFixture[str]) -> tuple[float, float, list[dict]]:
    """Median request latency logging through CloudWatch healthy and degraded, interleaved
    request by request so that whatever else loads the machine weighs on both alike."""
    normal_logger = isolated_logger("normal", _stdout_handler(), normal)
    degraded_logger = isolated_logger("degraded", _stdout_handler(), degraded)
    for i in range(20):  # warm-up: imports, sender threads, the first connection to moto
        _request(normal_logger, i)
    assert normal.flush_within(5.0)
    capsys.readouterr()
    normal_s, degraded_s = [], []
    for i in range(REQUESTS):
        normal_s.append(_request(normal_logger, i))
        degraded_s.append(_request(degraded_logger, i))
    printed = [r for r in json_lines(capsys.readouterr().out) if r["logger"] == degraded_logger.name]
    assert normal.flush_within(5.0)
    assert normal.stats()["sent"] == REQUESTS + 20 and normal.stats()["dropped"] == 0
    return statistics.median(normal_s), statistics.median(degraded_s), printed


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_cloudwatch_unreachable_costs_no_latency(cloudwatch, moto_endpoint: str, closed_endpoint: str, log_group: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    normal = cloudwatch(endpoint=moto_endpoint, group=log_group)
    down = cloudwatch(endpoint=closed_endpoint, group=log_group, CLOUDWATCH_QUEUE_SIZE=50)
    normal_s, down_s, printed = _compare(normal, down, capsys)
    assert down_s <= normal_s * 1.10, f"normal {normal_s * 1000:.2f} ms, CloudWatch down {down_s * 1000:.2f} ms"
    # every record reached stdout, in order
    assert [r["payment_id"] for r in printed] == [f"pay_{i:024d}" for i in range(REQUESTS)]
    assert _wait_for(lambda: down.stats()["errors"] >= 1)
    stats = down.stats()
    assert stats["dropped"] >= REQUESTS - 50  # the queue holds 50, the rest is dropped and counted
    assert stats["sent"] == 0 and stats["queued"] <= 50
    assert stats["state"] == "degraded" and stats["last_error"] == "EndpointConnectionError"
    assert stats["last_error_at"] is not None and stats["last_success_at"] is None


def test_cloudwatch_answering_slowly_costs_no_latency(cloudwatch, moto_endpoint: str, blackhole, log_group: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    normal = cloudwatch(endpoint=moto_endpoint, group=log_group)
    slow = cloudwatch(endpoint=f"http://127.0.0.1:{blackhole.port}", group=log_group,
                      CLOUDWATCH_QUEUE_SIZE=50, CLOUDWATCH_TIMEOUT=0.5, CLOUDWATCH_FLUSH_TIMEOUT=0.5)
    isolated_logger("slow-warmup", slow).info("first record: the sender connects and waits for an answer")
    assert _wait_for(lambda: blackhole.accepted >= 1)
    normal_s, slow_s, printed = _compare(normal, slow, capsys)
    assert slow_s <= normal_s * 1.10, f"normal {normal_s * 1000:.2f} ms, CloudWatch slow {slow_s * 1000:.2f} ms"
    assert len(printed) == REQUESTS
    assert slow.stats()["dropped"] >= REQUESTS - 50
    assert _wait_for(lambda: slow.stats()["errors"] >= 1)
    assert slow.stats()["last_error"] == "ReadTimeoutError"
    # a flush while CloudWatch hangs returns within its bound, and says it did not finish
    started = time.monotonic()
    assert slow.flush_within(0.5) is False
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


def test_a_hanging_send_reports_degraded_before_boto3_gives_up(cloudwatch, blackhole, log_group: str) -> None:
    handler = cloudwatch(endpoint=f"http://127.0.0.1:{blackhole.port}", group=log_group,
                         CLOUDWATCH_TIMEOUT=1.0, CLOUDWATCH_FLUSH_TIMEOUT=0.2)
    isolated_logger("stall", handler).info("a record the sender cannot deliver")
    assert _wait_for(lambda: handler.stats()["send_in_flight_s"] > 1.1, timeout=5)
    stats = handler.stats()
    assert stats["errors"] == 0  # boto3 is still retrying inside the call...
    assert stats["state"] == "degraded"  # ...but the health check already knows


def test_shutdown_waits_once_however_many_hooks_flush(cloudwatch, blackhole, log_group: str) -> None:
    handler = cloudwatch(endpoint=f"http://127.0.0.1:{blackhole.port}", group=log_group,
                         CLOUDWATCH_TIMEOUT=5.0, CLOUDWATCH_FLUSH_TIMEOUT=0.5)
    isolated_logger("hooks", handler).info("stuck behind a hanging call")
    assert _wait_for(lambda: blackhole.accepted >= 1)
    started = time.monotonic()
    assert handler.flush_within(handler.flush_timeout) is False  # Celery's worker_shutdown signal
    handler.flush()  # logging.shutdown(): flush...
    handler.close()  # ...and close
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.9, f"shutdown took {elapsed:.2f} s for a 0.5 s bound"
