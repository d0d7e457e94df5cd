"""watchtower's CloudWatch handler, made bounded, counted and unable to block its caller.

watchtower 3.4 queues records per stream and sends them from a thread, which is what we
want, but its queue is unbounded, it creates the log group inside `__init__` (a network
call at start-up, up to timeout x retries when CloudWatch is away), it reports failures
only as `warnings`, and its flush waits 30 s per stream. This subclass keeps watchtower's
batching thread (`_dequeue_batch`) and replaces the parts around it:

- `emit` formats, then `put_nowait`s into a queue of at most `max_queue_size` records;
  a full queue drops the record and counts it. It never touches the network.
- log group, retention and stream are set up by the sender thread before its first batch.
- `_submit_batch` counts what was sent, rejected and failed; a batch that failed for a
  transient reason (network, throttling, 5xx) goes back into the queue while there is
  room, and the sender backs off before the next try.
- `flush` and `close` wait at most `flush_timeout` seconds in all.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from operator import itemgetter
from typing import Any

import boto3
import watchtower
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionError as BotoConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
)

logger = logging.getLogger(__name__)

# CloudWatch's limit is 256 KiB per event including 26 bytes of overhead.
MAX_EVENT_BYTES = 256 * 1024 - 26
_TRANSIENT = (HTTPClientError, BotoConnectionError, NoCredentialsError, CredentialRetrievalError)
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "InternalFailure", "RequestTimeout",
     "RequestTimeoutException", "LimitExceededException"}
)
_MAX_BACKOFF = 30.0  # s between tries while CloudWatch keeps failing


def logs_client(*, region: str, endpoint_url: str | None, timeout: float) -> Any:
    """A CloudWatch Logs client whose every call is bounded: timeouts and standard retries."""
    client = boto3.session.Session().client(
        "logs",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard"},  # 3 attempts with jittered exponential backoff
            max_pool_connections=2,  # one sender thread per process
        ),
    )
    # CloudWatch extracts EMF metrics without it nowadays; the header makes it explicit.
    client.meta.events.register("before-sign.cloudwatch-logs.PutLogEvents", _emf_header)
    return client


def _emf_header(request: Any, **_: Any) -> None:
    request.headers["x-amzn-logs-format"] = "json/emf"


def _not_transport(record: logging.LogRecord) -> bool:
    # botocore and urllib3 log about the very calls that ship records; shipping those
    # records would feed the failure back into the queue.
    return not record.name.startswith(("botocore", "urllib3", "boto3"))


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500
    return False


def _rejected(response: dict, count: int) -> int:
    info = response.get("rejectedLogEventsInfo") or {}
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = count - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(count, too_old + too_new)


class BoundedCloudWatchHandler(watchtower.CloudWatchLogHandler):
    def __init__(self, *, log_group_name: str, stream_prefix: str, boto3_client: Any,
                 retention_days: int | None = None, max_queue_size: int = 10000,
                 send_interval: float = 5.0, flush_timeout: float = 5.0, max_batch_count: int = 10000) -> None:
        self.max_queue_size = max_queue_size
        self.flush_timeout = flush_timeout
        self.retention_days = retention_days
        # CloudWatch refuses ':' and '*' in stream names.
        self.stream_prefix = stream_prefix.replace(":", "-").replace("*", "-")
        super().__init__(
            log_group_name=log_group_name,
            log_stream_name=self.stream_prefix + "/{process_id}",
            use_queues=True,
            send_interval=send_interval,  # type: ignore[arg-type]  (watchtower accepts floats)
            max_batch_count=max_batch_count,
            boto3_client=boto3_client,
            create_log_group=False,  # done by the sender thread, never at start-up
            log_group_retention_days=None,
            create_log_stream=True,
        )
        self.addFilter(_not_transport)

    # --- state ----------------------------------------------------------------------
    def _init_state(self) -> None:
        # watchtower calls this from __init__ and again in a forked child: counters,
        # queues and threads belong to one process.
        super()._init_state()
        self._stats_lock = threading.Lock()
        self._sent = self._dropped = self._errors = self._failed = 0
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._last_error: str | None = None
        self._failing = False
        self._failures_in_row = 0
        self._group_ready = False
        self._streams_ready: set[str] = set()
        self._wake = threading.Event()  # cuts a backoff short when someone flushes
        self._drain_failed_at: float | None = None

    def stats(self) -> dict[str, Any]:
        """Counters since this process started; times are Unix seconds (time.time())."""
        queued = sum(q.qsize() for q in list(self.queues.values()))
        with self._stats_lock:
            failing = self._failing
            return {
                "queued": queued,
                "capacity": self.max_queue_size,
                "sent": self._sent,
                "dropped": self._dropped,
                "errors": self._errors,
                "failed": self._failed,
                "last_error_at": self._last_error_at,
                "last_success_at": self._last_success_at,
                "last_error": self._last_error,
                "state": "degraded" if failing or queued >= 0.8 * self.max_queue_size else "ok",
            }

    # --- the caller's side: never blocks ----------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shutting_down:
                self._count_dropped(1)
                return
            message = self.format(record)
            if not message:
                return  # CloudWatch refuses empty events
            if len(message) > MAX_EVENT_BYTES // 4:  # only then can the UTF-8 size exceed the limit
                message = message.encode("utf-8")[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
            stream = f"{self.stream_prefix}/{os.getpid()}"
            events = self.queues.get(stream)
            if events is None:
                events = self._start_sender(stream)
            if events.qsize() >= self.max_queue_size:
                self._count_dropped(1)
            else:
                events.put_nowait({"timestamp": int(record.created * 1000), "message": message})
        except Exception:
            self.handleError(record)

    def _start_sender(self, stream: str) -> queue.Queue:
        # Unbounded Queue on purpose: the bound is enforced in emit, so flush/close can
        # always add their sentinel without blocking on a full queue.
        events: queue.Queue = queue.Queue()
        self.queues[stream] = events
        self.sequence_tokens[stream] = None
        thread = threading.Thread(
            target=self._dequeue_batch,
            args=(events, stream, self.send_interval, self.max_batch_size, self.max_batch_count),
            name="cloudwatch-sender",
            daemon=True,
        )
        self.threads.append(thread)
        thread.start()
        return events

    # --- the sender thread's side ---------------------------------------------------------
    def _submit_batch(self, batch: list, log_stream_name: str, max_retries: int = 2) -> None:
        if not batch:
            return
        events = sorted(batch, key=itemgetter("timestamp"))
        for _ in range(max_retries):
            try:
                self._prepare(log_stream_name)
                response = self.cwl_client.put_log_events(
                    logGroupName=self.log_group_name, logStreamName=log_stream_name, logEvents=events
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    # Group or stream deleted under us: set them up again and retry once.
                    self._group_ready = False
                    self._streams_ready.discard(log_stream_name)
                    continue
                self._failure(exc, events, log_stream_name)
                return
            except Exception as exc:
                self._failure(exc, events, log_stream_name)
                return
            rejected = _rejected(response, len(events))
            self._success(len(events) - rejected, rejected)
            return
        self._failure(RuntimeError("log group or stream keeps disappearing"), events, log_stream_name)

    def _prepare(self, stream: str) -> None:
        if not self._group_ready:
            try:
                self._ensure_log_group()
                if self.retention_days:
                    self.cwl_client.put_retention_policy(
                        logGroupName=self.log_group_name, retentionInDays=self.retention_days
                    )
            except ClientError:
                # Not allowed to describe, create or set retention (a group provisioned
                # elsewhere): PutLogEvents will tell whether we may write.
                pass
            self._group_ready = True
        if stream not in self._streams_ready:
            try:
                self.cwl_client.create_log_stream(logGroupName=self.log_group_name, logStreamName=stream)
            except self.cwl_client.exceptions.ResourceAlreadyExistsException:
                pass
            self._streams_ready.add(stream)

    def _success(self, sent: int, rejected: int) -> None:
        with self._stats_lock:
            self._sent += sent
            self._failed += rejected
            self._last_success_at = time.time()
            recovered, self._failing = self._failing, False
            self._failures_in_row = 0
            dropped = self._dropped
        if recovered:
            logger.warning("CloudWatch Logs reachable again; %s records dropped so far", dropped,
                           extra={"category": "cloudwatch_recovered", "dropped": dropped})

    def _failure(self, exc: Exception, events: list, stream: str) -> None:
        transient = _is_transient(exc)
        requeued = 0
        if transient and not self.shutting_down:
            target = self.queues.get(stream)
            room = self.max_queue_size - target.qsize() if target is not None else 0
            for event in events[: max(0, room)]:
                target.put_nowait(event)  # type: ignore[union-attr]
                requeued += 1
        with self._stats_lock:
            self._errors += 1
            self._last_error_at = time.time()
            self._last_error = exc.__class__.__name__
            if transient:
                self._dropped += len(events) - requeued
            else:
                self._failed += len(events)
            started, self._failing = not self._failing, True
            self._failures_in_row += 1
            backoff = min(_MAX_BACKOFF, 2.0 ** self._failures_in_row)
        if started:
            # Once per outage, not per batch: the record goes to stdout at once and to
            # CloudWatch when it is back.
            logger.warning("CloudWatch Logs unavailable (%s); records stay on stdout, queue up to %s",
                           exc.__class__.__name__, self.max_queue_size,
                           extra={"category": "cloudwatch_unavailable", "error": exc.__class__.__name__})
        if transient and not self.shutting_down:
            self._wake.wait(backoff)

    def _count_dropped(self, count: int) -> None:
        with self._stats_lock:
            self._dropped += count

    # --- shutdown: bounded --------------------------------------------------------------
    def flush_within(self, timeout: float) -> bool:
        """Sends what is queued, waiting at most `timeout` s; True when everything went out."""
        if self.shutting_down:
            return True
        return self._drain(self.FLUSH, timeout)

    def flush(self) -> None:
        self.flush_within(self.flush_timeout)

    def close(self) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        # logging.shutdown() calls flush() and then close(): when that flush already
        # timed out, the sender is stuck in the same call and waiting again only doubles
        # the shutdown time.
        stuck = self._drain_failed_at is not None and time.monotonic() - self._drain_failed_at < self.flush_timeout
        self._drain(self.END, 0.0 if stuck else self.flush_timeout)
        logging.Handler.close(self)

    def _drain(self, sentinel: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._wake.set()
        try:
            pending = list(self.queues.values())
            for events in pending:
                events.put(sentinel)
            drained = True
            for events in pending:
                with events.all_tasks_done:
                    drained &= events.all_tasks_done.wait_for(
                        lambda q=events: q.unfinished_tasks == 0, timeout=max(0.0, deadline - time.monotonic())
                    )
        finally:
            if sentinel != self.END:
                self._wake.clear()
        self._drain_failed_at = None if drained else time.monotonic()
        return drained
