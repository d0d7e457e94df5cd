"""Embedded Metric Format: documents CloudWatch turns into metrics, written through the logs."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings

from config.logs.emf import METRICS_LOGGER, emf_document, emit_metrics
from config.logs.formatter import JsonFormatter
from config.logs.redaction import RedactionFilter
from tests.logs.support import wait_for_events

# From the CloudWatch MetricDatum reference, written out here rather than imported.
CLOUDWATCH_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}


def assert_valid_emf(event: dict) -> None:
    """The rules of the EMF specification a document must meet for CloudWatch to extract it."""
    aws = event["_aws"]
    assert isinstance(aws["Timestamp"], int)
    assert abs(aws["Timestamp"] - time.time() * 1000) < 5 * 60 * 1000
    assert aws["CloudWatchMetrics"], "at least one metric directive"
    for directive in aws["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 1024
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(event[name], str), f"dimension {name} must be a top-level string"
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert isinstance(event[metric["Name"]], (int, float)), f"metric {metric['Name']} needs a value"
            assert metric["Unit"] in CLOUDWATCH_UNITS


@pytest.fixture
def metrics_stream() -> Iterator[io.StringIO]:
    """The metrics logger's records, formatted as the service formats them, during one test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(role="web"))
    handler.addFilter(RedactionFilter())
    logger = logging.getLogger(METRICS_LOGGER)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_document_shape() -> None:
    document = emf_document(
        "PaymentOps", {"role": "web", "pool": "db"},
        {"PoolUtilisation": (85.0, "Percent"), "PoolWaiting": (3, "Count"), "GatewayLatency": (412.5, "Milliseconds")},
        timestamp_ms=1795880280957,
    )
    assert document == {
        "_aws": {
            "Timestamp": 1795880280957,
            "CloudWatchMetrics": [
                {
                    "Namespace": "PaymentOps",
                    "Dimensions": [["role", "pool"]],
                    "Metrics": [
                        {"Name": "PoolUtilisation", "Unit": "Percent"},
                        {"Name": "PoolWaiting", "Unit": "Count"},
                        {"Name": "GatewayLatency", "Unit": "Milliseconds"},
                    ],
                }
            ],
        },
        "role": "web",
        "pool": "db",
        "PoolUtilisation": 85.0,
        "PoolWaiting": 3.0,
        "GatewayLatency": 412.5,
    }


def test_emitted_record_is_valid_emf_at_the_top_level(metrics_stream: io.StringIO) -> None:
    emit_metrics(None, {"pool": "db"}, {"PoolUtilisation": (42.5, "Percent"), "Timeouts": (0, "Count")})
    event = json.loads(metrics_stream.getvalue())
    assert_valid_emf(event)
    assert event["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PaymentOps"  # the default
    assert event["category"] == "metrics"
    assert event["PoolUtilisation"] == 42.5 and event["Timeouts"] == 0


def test_namespace_comes_from_settings(metrics_stream: io.StringIO) -> None:
    with override_settings(METRICS_NAMESPACE="PaymentOps/Staging"):
        emit_metrics(None, {}, {"HealthStatus": (1, "None")})
    event = json.loads(metrics_stream.getvalue())
    assert event["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PaymentOps/Staging"
    assert event["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    assert_valid_emf(event)


def test_missing_and_non_finite_values_are_left_out(metrics_stream: io.StringIO) -> None:
    emit_metrics("PaymentOps", {"dependency": "gateway"},
                 {"GatewayLatency": (None, "Milliseconds"), "Bad": (float("nan"), "Count"), "Up": (1, "Count")})
    event = json.loads(metrics_stream.getvalue())
    assert [m["Name"] for m in event["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["Up"]
    assert "GatewayLatency" not in event and "Bad" not in event
    assert_valid_emf(event)


def test_nothing_is_written_without_a_value(metrics_stream: io.StringIO) -> None:
    emit_metrics("PaymentOps", {}, {"GatewayLatency": (None, "Milliseconds")})
    assert metrics_stream.getvalue() == ""


@pytest.mark.parametrize(
    ("dimensions", "metrics"),
    [
        ({}, {"Latency": (1.0, "ms")}),  # not a CloudWatch unit
        ({"message": "x"}, {"Latency": (1.0, "Milliseconds")}),  # would overwrite the record's message
        ({}, {"level": (1.0, "Count")}),
        ({"pool": "db"}, {"pool": (1.0, "Count")}),
        ({f"d{i}": "x" for i in range(31)}, {"Up": (1, "Count")}),
        ({}, {f"m{i}": (1, "Count") for i in range(101)}),
    ],
)
def test_documents_cloudwatch_would_refuse_are_a_programming_error(dimensions: dict, metrics: dict) -> None:
    with pytest.raises(ValueError):
        emit_metrics("PaymentOps", dimensions, metrics)


def test_emf_records_reach_cloudwatch_with_their_definitions(moto_endpoint: str, log_group: str, cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    logger = logging.getLogger(METRICS_LOGGER)
    logger.addHandler(handler)
    try:
        emit_metrics(None, {"role": "web", "pool": "db"},
                     {"PoolUtilisation": (91.0, "Percent"), "PoolWaiting": (4, "Count"), "PoolTimeouts": (1, "Count")})
        emit_metrics(None, {"role": "web", "outcome": "succeeded"}, {"Payments": (12, "Count")})
        assert handler.flush_within(5.0)
    finally:
        logger.removeHandler(handler)
    (messages,) = wait_for_events(moto_endpoint, log_group, 2).values()
    events = [json.loads(message) for message in messages]
    assert len(events) == 2
    for event in events:
        assert_valid_emf(event)
        assert event["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PaymentOps"
    pool, payments = events
    assert pool["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["role", "pool"]]
    assert {m["Name"]: m["Unit"] for m in pool["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "PoolUtilisation": "Percent", "PoolWaiting": "Count", "PoolTimeouts": "Count"}
    assert (pool["pool"], pool["PoolUtilisation"], pool["PoolWaiting"]) == ("db", 91.0, 4.0)
    assert (payments["outcome"], payments["Payments"]) == ("succeeded", 12.0)
