"""What became of the records a CloudWatch handler accepted, counted under one lock.

A record accepted by `emit` is pending (queued or in flight) until its batch is decided:
sent, rejected by CloudWatch (failed), or given up (dropped). Pending records are bounded
by the handler's queue size; a record over the bound is dropped at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

MAX_BACKOFF = 30.0  # s between tries while CloudWatch keeps failing


class DeliveryLedger:
    def __init__(self, *, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when nothing is pending
        self.pending = 0
        self._sent = self._dropped = self._errors = self._failed = 0
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._last_error: str | None = None
        self._failing = False
        self._failures_in_row = 0

    def accept(self) -> bool:
        """Counts one more record pending; False, and the record counted dropped, at capacity."""
        with self._lock:
            if self.pending >= self.capacity:
                self._dropped += 1
                return False
            self.pending += 1
            return True

    def settle(self, *, pending: int, dropped: int = 0, failed: int = 0) -> None:
        """`pending` records are decided: `dropped` and `failed` of them (or beside them) counted so."""
        with self._lock:
            self.pending -= pending
            self._dropped += dropped
            self._failed += failed
            if self.pending <= 0:
                self._settled.notify_all()

    def succeeded(self, *, sent: int, rejected: int) -> tuple[bool, int]:
        """Counts a batch CloudWatch took; returns whether that ends an outage, and the records
        dropped so far."""
        with self._lock:
            self._sent += sent
            self._failed += rejected
            self._last_success_at = time.time()
            recovered, self._failing = self._failing, False
            self._failures_in_row = 0
            dropped = self._dropped
        self.settle(pending=sent + rejected)
        return recovered, dropped

    def failed_with(self, exc: Exception) -> tuple[bool, float]:
        """Counts a failed try; returns whether it starts an outage, and the s to wait before
        the next try (doubling, at most MAX_BACKOFF)."""
        with self._lock:
            self._errors += 1
            self._last_error_at = time.time()
            self._last_error = exc.__class__.__name__
            started, self._failing = not self._failing, True
            self._failures_in_row += 1
            return started, min(MAX_BACKOFF, 2.0 ** min(self._failures_in_row, 8))

    def wait_settled(self, timeout: float) -> bool:
        """Waits at most `timeout` s for nothing to be pending; True when nothing is."""
        with self._settled:
            return self._settled.wait_for(lambda: self.pending <= 0, timeout=timeout)

    def stats(self, *, in_flight: float, stall_after: float) -> dict[str, Any]:
        """The handler's counters; degraded while failing, while a send has run longer than
        `stall_after` s, or while the queue is 80 % full."""
        with self._lock:
            degraded = self._failing or in_flight > stall_after or self.pending >= 0.8 * self.capacity
            return {
                "queued": self.pending,
                "capacity": self.capacity,
                "sent": self._sent,
                "dropped": self._dropped,
                "errors": self._errors,
                "failed": self._failed,
                "last_error_at": self._last_error_at,
                "last_success_at": self._last_success_at,
                "last_error": self._last_error,
                "send_in_flight_s": round(in_flight, 3),
                "state": "degraded" if degraded else "ok",
            }
