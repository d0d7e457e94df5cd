"""Structured events and the logging configuration that carries them."""

from __future__ import annotations

import io
import json
import logging

import pytest

from config.logs.events import CATEGORIES, CONTEXT_FIELDS, log_event
from config.logs.formatter import JsonFormatter
from config.logs.redaction import RedactionFilter
from config.logs.setup import build_logging, logging_configured
from tests.logs.support import isolated_logger

ISSUE_CATEGORIES = (
    "payment_timeout", "payment_connection_error", "gateway_5xx", "gateway_rate_limited",
    "circuit_open", "circuit_closed", "payment_unknown_outcome", "db_pool_exhausted",
    "db_pool_timeout", "db_unavailable", "http_pool_full", "alert_raised", "alert_resolved",
)


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(role="worker"))
    handler.addFilter(RedactionFilter())
    return isolated_logger("events", handler), stream


def test_every_category_of_the_issue_is_known() -> None:
    assert set(ISSUE_CATEGORIES) <= set(CATEGORIES)
    assert set(CONTEXT_FIELDS) == {"payment_id", "attempt", "idempotency_key", "gateway_request_id",
                                   "duration_ms", "role"}


def test_log_event_writes_category_and_context_ids_as_fields() -> None:
    logger, stream = _capture()
    log_event(logger, "payment_timeout", "gateway call timed out", level=logging.WARNING,
              payment_id="pay_abc", attempt=2, idempotency_key="pay_abc-1",
              gateway_request_id="req_123", duration_ms=10004)
    record = json.loads(stream.getvalue())
    assert record["category"] == "payment_timeout"
    assert record["level"] == "warning"
    assert record["message"] == "gateway call timed out"
    assert record["role"] == "worker"
    assert (record["payment_id"], record["attempt"], record["idempotency_key"], record["gateway_request_id"],
            record["duration_ms"]) == ("pay_abc", 2, "pay_abc-1", "req_123", 10004)
    assert "category_known" not in record
    # stacklevel: the record names the caller, not the helper
    assert record["logger"].startswith("tests.logs.events")


def test_unknown_categories_are_logged_and_marked() -> None:
    logger, stream = _capture()
    log_event(logger, "payment_timout", "typo in the category")
    record = json.loads(stream.getvalue())
    assert record["category"] == "payment_timout"
    assert record["category_known"] is False


def test_context_names_that_logging_reserves_do_not_lose_the_record() -> None:
    logger, stream = _capture()
    log_event(logger, "alert_raised", "pool above threshold", name="db", msg="x", level=logging.ERROR)
    record = json.loads(stream.getvalue())
    assert record["ctx_name"] == "db" and record["ctx_msg"] == "x"
    assert record["message"] == "pool above threshold"


def test_log_event_context_is_redacted() -> None:
    logger, stream = _capture()
    log_event(logger, "gateway_5xx", "gateway answered 502", request={"Authorization": "Bearer sk_live_x1"})
    assert json.loads(stream.getvalue())["request"] == {"Authorization": "[redacted]"}


@pytest.mark.parametrize("group", [None, "/payops/prod"])
def test_every_handler_carries_the_redaction_filter(group: str | None) -> None:
    config = build_logging(level="INFO", fmt="json", role="web", cloudwatch_group=group)
    assert set(config["handlers"]) == ({"stdout", "cloudwatch"} if group else {"stdout"})
    for handler in config["handlers"].values():
        assert handler["filters"] == ["redact"]
    assert config["filters"]["redact"]["()"] == "config.logs.redaction.RedactionFilter"
    if group:
        assert config["handlers"]["cloudwatch"]["formatter"] == "json"
        assert config["handlers"]["cloudwatch"]["()"] == "config.logs.cloudwatch.make_handler"
    # loggers that do not propagate still end on our (filtered) handlers
    for name in ("django", "django.server"):
        assert config["loggers"][name]["handlers"] == list(config["handlers"])
    assert config["loggers"]["payops.metrics"]["level"] == "INFO"


def test_this_process_is_configured_with_the_filter_and_without_cloudwatch() -> None:
    from config.logs.cloudwatch import handler_stats

    assert logging_configured()
    ours = [h for h in logging.getLogger().handlers if h.name in {"stdout", "cloudwatch"}]
    assert [h.name for h in ours] == ["stdout"]
    assert any(isinstance(f, RedactionFilter) for f in ours[0].filters)
    assert handler_stats() is None  # CLOUDWATCH_LOG_GROUP is unset in the test settings
