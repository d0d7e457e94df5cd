"""The CloudWatch sender thread's loop: records from one stream's queue gathered into batches."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable


def batches_send(events: queue.Queue, *, send_interval: float, max_batch_size: int, max_batch_count: int,
                 size_of: Callable[[dict], int], submit: Callable[[list[dict]], None],
                 draining: Callable[[], bool], end: object) -> None:
    """Hands `submit` batches of at most `max_batch_count` records and `max_batch_size` bytes:
    when one is full, when `send_interval` s have passed since the last, when a sentinel arrives
    (a flush), and once the queue is empty while `draining()`. Returns after the `end` sentinel.

    watchtower's loop marks a record done when it joins a batch, so its flush can return while
    that batch is still in flight or about to be retried; here records are settled only when
    `submit` has decided their batch."""
    batch: list[dict] = []
    size = 0
    deadline = time.monotonic() + send_interval
    while True:
        try:
            item = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            item = None
        if isinstance(item, dict):
            if batch and size + size_of(item) > max_batch_size:
                submit(batch)
                batch, size = [], 0
            batch.append(item)
            size += size_of(item)
            due = time.monotonic() >= deadline or (draining() and events.empty())
            if len(batch) < max_batch_count and not due:
                continue
        elif item is None and time.monotonic() < deadline:
            continue
        if batch:
            submit(batch)
            batch, size = [], 0
        deadline = time.monotonic() + send_interval
        if item == end:
            return
