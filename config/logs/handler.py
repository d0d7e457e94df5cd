"""watchtower's CloudWatch handler, made bounded, counted and unable to block its caller.

watchtower 3.4 batches records per stream in a thread of its own, which is what we want,
and brings the client plumbing (group creation, idempotent calls). But its queue is
unbounded, it creates the log group inside `__init__` (a network call at start-up, up to
timeout x retries when CloudWatch is away), it reports failures only as `warnings`, its
batching loop marks records done before they are sent (so a flush can return with a
batch still in flight), and its flush waits 30 s per stream. This subclass keeps
watchtower's construction, group creation and size accounting, and replaces the rest:

- `emit` formats and `put_nowait`s; when `max_queue_size` records are already pending
  (queued or in flight) it drops the record and counts it. It never touches the network.
- the boto3 client, the log group, its retention and the stream are set up by the sender
  thread, before its first batch.
- the sender counts what was sent, rejected and failed (ledger.py); a batch that failed
  for a transient reason (network, credentials, throttling, 5xx) goes back into the queue
  and the sender backs off before the next try. Batches are gathered by batches.py.
- `flush` and `close` wait at most `flush_timeout` seconds.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from operator import itemgetter
from typing import Any

import watchtower
from botocore.exceptions import ClientError, CredentialRetrievalError, NoCredentialsError

from config.logs.batches import batches_send
from config.logs.client import LazyClient, is_transient
from config.logs.ledger import DeliveryLedger

logger = logging.getLogger(__name__)

# CloudWatch's limit is 256 KiB per event including 26 bytes of overhead.
MAX_EVENT_BYTES = 256 * 1024 - 26


def _not_transport(record: logging.LogRecord) -> bool:
    # botocore and urllib3 log about the very calls that ship records; shipping those
    # records would feed the failure back into the queue.
    return not record.name.startswith(("botocore", "urllib3", "boto3"))


def _rejected(response: dict, count: int) -> int:
    info = response.get("rejectedLogEventsInfo") or {}
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = count - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(count, too_old + too_new)


class BoundedCloudWatchHandler(watchtower.CloudWatchLogHandler):
    def __init__(self, *, log_group_name: str, stream_prefix: str, boto3_client: Any,
                 retention_days: int | None = None, max_queue_size: int = 10000,
                 send_interval: float = 5.0, flush_timeout: float = 5.0, max_batch_count: int = 10000,
                 stall_after: float = 15.0) -> None:
        self.max_queue_size = max_queue_size
        # A send running longer than this (the client's read timeout) means CloudWatch
        # hangs: say so before boto3's retries finally give up.
        self.stall_after = stall_after
        self.flush_timeout = flush_timeout
        self.retention_days = retention_days
        # CloudWatch refuses ':' and '*' in stream names.
        self.stream_prefix = stream_prefix.replace(":", "-").replace("*", "-")
        super().__init__(
            log_group_name=log_group_name,
            log_stream_name=self.stream_prefix + "/{process_id}",
            use_queues=True,
            send_interval=send_interval,  # type: ignore[arg-type]  # watchtower takes floats too
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
        self._ledger = DeliveryLedger(capacity=self.max_queue_size)
        self._group_ready = False
        self._streams_ready: set[str] = set()
        self._sending_since: float | None = None  # monotonic start of the call in flight
        self._pause = 0.0  # s the sender waits before retrying a batch that failed
        self._draining = False
        self._wake = threading.Event()  # cuts a backoff short when someone flushes
        self._drain_failed_at: float | None = None

    def _at_fork_reinit(self) -> None:
        super()._at_fork_reinit()  # new lock, and _init_state(): empty queues, zero counters
        if isinstance(getattr(self, "cwl_client", None), LazyClient):
            self.cwl_client = self.cwl_client.fresh()

    def stats(self) -> dict[str, Any]:
        """Counters since this process started; times are Unix seconds (time.time())."""
        since = self._sending_since
        in_flight = time.monotonic() - since if since is not None else 0.0
        return self._ledger.stats(in_flight=in_flight, stall_after=self.stall_after)

    # --- the caller's side: never blocks ----------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.shutting_down:
                self._ledger.settle(pending=0, dropped=1)
                return
            message = self.format(record)
            if not message:
                return  # CloudWatch refuses empty events
            if len(message) > MAX_EVENT_BYTES // 4:  # only then can the UTF-8 size exceed the limit
                message = message.encode("utf-8")[:MAX_EVENT_BYTES].decode("utf-8", "ignore")
            stream = f"{self.stream_prefix}/{os.getpid()}"
            events = self.queues.get(stream) or self._start_sender(stream)
            if not self._ledger.accept():
                return
            events.put_nowait({"timestamp": int(record.created * 1000), "message": message})
        except Exception:
            self.handleError(record)

    def _start_sender(self, stream: str) -> queue.Queue:
        # An unbounded Queue: the bound is the pending count checked in emit, so flush and
        # close can always add their sentinel without blocking.
        events: queue.Queue = queue.Queue()
        self.queues[stream] = events
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
    def _dequeue_batch(self, events: queue.Queue, stream: str, send_interval: float,
                       max_batch_size: int, max_batch_count: int) -> None:
        batches_send(events, send_interval=send_interval, max_batch_size=max_batch_size,
                     max_batch_count=max_batch_count, size_of=self._size,
                     submit=lambda batch: self._submit_batch(batch, stream),
                     draining=lambda: self._draining, end=self.END)

    def _submit_batch(self, batch: list, log_stream_name: str, max_retries: int = 2) -> None:
        if not batch:
            return
        try:
            self._send(sorted(batch, key=itemgetter("timestamp")), log_stream_name, max_retries)
        except Exception as exc:  # the sender thread must outlive any bug or surprise
            self._failure(exc, batch, log_stream_name, transient=False)
        pause, self._pause = self._pause, 0.0
        if pause and self._wake.wait(pause):
            # A flush cut the pause short for one prompt try; the next failure pauses again.
            self._wake.clear()

    def _send(self, events: list, stream: str, max_retries: int) -> None:
        self._sending_since = time.monotonic()
        try:
            self._send_once(events, stream, max_retries)
        finally:
            self._sending_since = None

    def _send_once(self, events: list, stream: str, max_retries: int) -> None:
        for _ in range(max_retries):
            try:
                self._prepare(stream)
                response = self.cwl_client.put_log_events(
                    logGroupName=self.log_group_name, logStreamName=stream, logEvents=events
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    # Group or stream deleted under us: set them up again and retry once.
                    self._group_ready = False
                    self._streams_ready.discard(stream)
                    continue
                self._failure(exc, events, stream, transient=is_transient(exc))
                return
            except Exception as exc:
                if isinstance(exc, (NoCredentialsError, CredentialRetrievalError)) and isinstance(
                        self.cwl_client, LazyClient):
                    # A client keeps the credentials it was built with, none here: the
                    # next try builds a new one, so a metadata service that failed once
                    # does not silence CloudWatch for the life of the process.
                    self.cwl_client.reset()
                self._failure(exc, events, stream, transient=is_transient(exc))
                return
            rejected = _rejected(response, len(events))
            self._success(len(events) - rejected, rejected)
            return
        self._failure(RuntimeError("log group or stream keeps disappearing"), events, stream, transient=True)

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
        recovered, dropped = self._ledger.succeeded(sent=sent, rejected=rejected)
        if recovered and not self._draining:
            logger.warning("CloudWatch Logs reachable again; %s records dropped so far", dropped,
                           extra={"category": "cloudwatch_recovered", "dropped": dropped})

    def _failure(self, exc: Exception, events: list, stream: str, *, transient: bool) -> None:
        target = self.queues.get(stream)
        retry = transient and not self.shutting_down and target is not None
        started, backoff = self._ledger.failed_with(exc)
        if retry:
            # Still pending, so still inside the bound emit enforces: they always fit.
            for event in events:
                target.put_nowait(event)
        elif transient:
            self._ledger.settle(dropped=len(events), pending=len(events))
        else:
            self._ledger.settle(failed=len(events), pending=len(events))
        if started and not self._draining:
            # Once per outage, not per batch: the record goes to stdout at once and to
            # CloudWatch when it is back. Not while draining: logging.shutdown() holds
            # this handler's lock then, and the record would wait for it until the drain
            # timed out.
            logger.warning("CloudWatch Logs unavailable (%s); records stay on stdout, queue up to %s",
                           exc.__class__.__name__, self.max_queue_size,
                           extra={"category": "cloudwatch_unavailable", "error": exc.__class__.__name__})
        if retry:
            self._pause = backoff

    # --- shutdown: bounded --------------------------------------------------------------
    def flush_within(self, timeout: float) -> bool:
        """Sends what is queued now, waiting at most `timeout` s; True when everything went out."""
        if self.shutting_down:
            return self._ledger.pending <= 0
        return self._drain(self.FLUSH, timeout)

    def flush(self) -> None:
        self.flush_within(0.0 if self._recently_stuck() else self.flush_timeout)

    def close(self) -> None:
        if self.shutting_down:
            return
        # From here a failed batch is dropped, not retried: the process is going away and
        # only what gets through within the bound counts.
        self.shutting_down = True
        self._drain(self.END, 0.0 if self._recently_stuck() else self.flush_timeout)
        logging.Handler.close(self)

    def _recently_stuck(self) -> bool:
        # A shutdown flushes more than once (Celery's signal, then logging.shutdown()'s
        # flush and close): when the last flush timed out moments ago the sender is stuck
        # in the same call, and waiting again would only multiply the shutdown time.
        failed_at = self._drain_failed_at
        return failed_at is not None and time.monotonic() - failed_at < self.flush_timeout

    def _drain(self, sentinel: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._draining = True
        self._wake.set()
        try:
            for events in list(self.queues.values()):
                events.put(sentinel)
            drained = self._ledger.wait_settled(max(0.0, deadline - time.monotonic()))
        finally:
            if sentinel != self.END:
                self._draining = False
        self._drain_failed_at = None if drained else time.monotonic()
        return drained
