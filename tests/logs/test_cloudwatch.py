"""Records reach CloudWatch (moto's server over real HTTP) in the right group and stream, as JSON."""

from __future__ import annotations

import json
import logging
import os
import socket
import time

from django.conf import settings
from django.test import override_settings

from config.logs import cloudwatch as cloudwatch_module
from config.logs.cloudwatch import handler_stats
from config.logs.events import log_event
from tests.logs.scan import find_secrets
from tests.logs.support import isolated_logger, json_lines, logs_client, run_django, wait_for_events


def test_records_arrive_in_the_group_and_stream_as_json(moto_endpoint: str, log_group: str, cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    logger = isolated_logger("delivery", handler)
    for attempt in (1, 2, 3):
        log_event(logger, "payment_timeout", "gateway call timed out", level=logging.WARNING,
                  payment_id="pay_abc", attempt=attempt, idempotency_key="pay_abc-create",
                  gateway_request_id=f"req_{attempt}", duration_ms=10000 + attempt)
    log_event(logger, "circuit_open", "gateway circuit opened", duration_ms=30000)
    assert handler.flush_within(5.0)

    streams = wait_for_events(moto_endpoint, log_group, 4)
    assert list(streams) == [f"{settings.HOSTNAME}/web/{os.getpid()}"]
    records = [json.loads(message) for message in streams[f"{settings.HOSTNAME}/web/{os.getpid()}"]]
    assert [r["category"] for r in records] == ["payment_timeout"] * 3 + ["circuit_open"]
    assert [r["attempt"] for r in records[:3]] == [1, 2, 3]
    assert {r["payment_id"] for r in records[:3]} == {"pay_abc"}
    assert records[0]["idempotency_key"] == "pay_abc-create"
    assert records[2]["gateway_request_id"] == "req_3" and records[2]["duration_ms"] == 10003
    assert all(r["role"] == "web" and r["pid"] == os.getpid() for r in records)

    stats = handler_stats()
    assert stats is not None
    assert (stats["sent"], stats["queued"], stats["dropped"], stats["errors"]) == (4, 0, 0, 0)
    assert stats["state"] == "ok" and stats["last_success_at"] > time.time() - 60


def test_the_group_is_created_with_its_retention(moto_endpoint: str, log_group: str, cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group, CLOUDWATCH_RETENTION_DAYS=14)
    isolated_logger("retention", handler).info("first record")
    assert handler.flush_within(5.0)
    (group,) = logs_client(moto_endpoint).describe_log_groups(logGroupNamePrefix=log_group)["logGroups"]
    assert group["logGroupName"] == log_group
    assert group["retentionInDays"] == 14


def test_records_are_redacted_before_they_leave(moto_endpoint: str, log_group: str, cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    isolated_logger("redacted", handler).warning(
        "charge with %s failed", "4242 4242 4242 4242",
        extra={"category": "gateway_5xx", "headers": {"Authorization": "Bearer sk_live_abcdef"}, "body": "cvc=123"},
    )
    assert handler.flush_within(5.0)
    (messages,) = wait_for_events(moto_endpoint, log_group, 1).values()
    assert find_secrets("\n".join(messages)) == []
    record = json.loads(messages[0])
    assert record["message"] == "charge with ************4242 failed"
    assert record["headers"] == {"Authorization": "[redacted]"} and record["body"] == "cvc=***"


def test_a_deleted_group_is_created_again(moto_endpoint: str, log_group: str, cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    logger = isolated_logger("recreate", handler)
    logger.info("before")
    assert handler.flush_within(5.0)
    logs_client(moto_endpoint).delete_log_group(logGroupName=log_group)
    logger.info("after")
    assert handler.flush_within(5.0)
    (messages,) = wait_for_events(moto_endpoint, log_group, 1).values()
    assert [json.loads(m)["message"] for m in messages] == ["after"]
    assert handler.stats()["sent"] == 2


def test_building_the_handler_makes_no_network_call(cloudwatch, blackhole, log_group: str) -> None:
    started = time.monotonic()
    handler = cloudwatch(endpoint=f"http://127.0.0.1:{blackhole.port}", group=log_group, CLOUDWATCH_TIMEOUT=5.0)
    assert time.monotonic() - started < 1.0
    assert type(handler).__name__ == "BoundedCloudWatchHandler"
    time.sleep(0.2)
    assert blackhole.accepted == 0  # group creation waits for the first record, in the sender thread


def test_a_handler_that_cannot_be_built_degrades_to_nothing(aws_env: None) -> None:
    saved = (cloudwatch_module._active, cloudwatch_module._setup_error)
    try:
        with override_settings(CLOUDWATCH_LOG_GROUP="/payops/x", AWS_ENDPOINT_URL="not a url",
                               AWS_REGION="us-east-1", CLOUDWATCH_TIMEOUT=1.0):
            cloudwatch_module._active = None
            handler = cloudwatch_module.make_handler()
        assert isinstance(handler, logging.NullHandler)
        stats = handler_stats()
        assert stats is not None and stats["state"] == "unavailable" and stats["last_error"]
    finally:
        cloudwatch_module._active, cloudwatch_module._setup_error = saved


def test_the_service_settings_ship_records_end_to_end(moto_endpoint: str, log_group: str) -> None:
    """A fresh process configured only through the environment, as the Procfile runs it."""
    code = """
import logging, os, sys
from config.logs.events import log_event
from config.logs.emf import emit_metrics
logger = logging.getLogger("payments.gateway")
log_event(logger, "payment_unknown_outcome", "read timeout after send", level=logging.WARNING,
          payment_id="pay_e2e", attempt=1, idempotency_key="pay_e2e-create", duration_ms=10001)
log_event(logger, "gateway_5xx", "not shipped: below LOG_LEVEL")
logging.getLogger("botocore.test").error("transport noise never goes to CloudWatch")
# a library's record, secrets and all: the filter is on the handlers, not on our loggers
logging.getLogger("django.request").warning("Bad Request: %s", {
    "HTTP_AUTHORIZATION": "Bearer sk_live_51HxYzAbCdEf", "card": "4242 4242 4242 4242", "cvc": "123"})
emit_metrics(None, {"role": "worker"}, {"PaymentsUnknown": (1, "Count")})
print("PID", os.getpid(), file=sys.stderr)
"""
    result = run_django(
        code, CLOUDWATCH_LOG_GROUP=log_group, AWS_ENDPOINT_URL=moto_endpoint, PROCESS_ROLE="worker",
        LOG_LEVEL="WARNING", CLOUDWATCH_SEND_INTERVAL="60000",
    )
    assert result.returncode == 0, result.stderr
    pid = int(result.stderr.split("PID ")[1].split()[0])
    stream = f"{socket.gethostname()}/worker/{pid}"
    streams = wait_for_events(moto_endpoint, log_group, 2)
    assert list(streams) == [stream]
    shipped = [json.loads(m) for m in streams[stream]]
    assert [r.get("category") for r in shipped] == ["payment_unknown_outcome", None, "metrics"]
    assert shipped[0]["role"] == "worker" and shipped[0]["payment_id"] == "pay_e2e"
    assert shipped[1]["logger"] == "django.request"
    assert shipped[2]["PaymentsUnknown"] == 1  # metrics pass a quieter LOG_LEVEL
    # stdout carries the same records, plus what CloudWatch never gets
    printed = json_lines(result.stdout)
    assert [r["logger"] for r in printed] == ["payments.gateway", "botocore.test", "django.request", "payops.metrics"]
    assert find_secrets(result.stdout) == [] and find_secrets("\n".join(streams[stream])) == []
    assert "************4242" in printed[2]["message"]


def test_credentials_are_resolved_by_the_sender_not_at_start_up(cloudwatch, blackhole, moto_endpoint: str,
                                                                log_group: str, monkeypatch, tmp_path) -> None:
    # No credentials anywhere: boto3 would ask the instance metadata service, here a
    # socket that never answers.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{blackhole.port}/")
    started = time.monotonic()
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    assert time.monotonic() - started < 0.5
    assert blackhole.accepted == 0
    isolated_logger("nocreds", handler).info("cannot be signed")
    deadline = time.monotonic() + 15
    while handler.stats()["errors"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = handler.stats()
    assert blackhole.accepted >= 1  # the sender asked the metadata service
    assert stats["last_error"] == "NoCredentialsError" and stats["state"] == "degraded"
    assert stats["queued"] == 1  # kept for when credentials appear
    # Credentials appear (a role attached, the metadata service back): the next try gets them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert handler.flush_within(5.0)
    assert handler.stats()["sent"] == 1 and handler.stats()["state"] == "ok"
    (messages,) = wait_for_events(moto_endpoint, log_group, 1).values()
    assert json.loads(messages[0])["message"] == "cannot be signed"


def test_a_forked_child_starts_with_its_own_queue_counters_and_client(moto_endpoint: str, log_group: str,
                                                                      cloudwatch) -> None:
    handler = cloudwatch(endpoint=moto_endpoint, group=log_group)
    isolated_logger("fork", handler).info("parent record")
    assert handler.flush_within(5.0) and handler.stats()["sent"] == 1
    parent_client = handler.cwl_client
    handler._at_fork_reinit()  # what logging runs in the child after os.fork()
    assert handler.stats()["sent"] == 0 and handler.queues == {}
    assert handler.cwl_client is not parent_client and handler.cwl_client._client is None
    isolated_logger("fork-child", handler).info("child record")
    assert handler.flush_within(5.0) and handler.stats()["sent"] == 1
