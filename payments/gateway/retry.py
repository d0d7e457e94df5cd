"""urllib3 Retry with backoff from the first retry, jitter, a cap, and a per-call deadline.

The deadline is per thread (set by the client around one logical call) because requests
hands the adapter's single Retry object to every call; Retry.new() copies it per try.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from config.http.pools import last_attempt
from payments.gateway import answers

# What urllib3 is told to consider at all; `GatewayRetry.is_retry` decides through the answer
# table, where the gateway's own Stripe-Should-Retry hint wins.
RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})

_deadline = threading.local()


def set_deadline(deadline: float | None, attempt_budget: float) -> None:
    """`deadline` is a time.monotonic() value; a new try starts only if `attempt_budget`
    seconds (a full read timeout) still fit before it, so no try can overrun the deadline."""
    _deadline.value = (deadline, attempt_budget) if deadline is not None else None


def clear_deadline() -> None:
    _deadline.value = None


class DeadlineExceeded(ResponseError):
    pass


class GatewayRetry(Retry):
    def __init__(self, *args: Any, first_delay: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_delay = first_delay

    def new(self, **kw: Any) -> GatewayRetry:
        kw.setdefault("first_delay", self.first_delay)
        return super().new(**kw)

    def get_backoff_time(self) -> float:
        # urllib3 retries the first failure at once; we back off from the first retry:
        # first_delay, 2x, 4x ... plus jitter, never above backoff_max.
        failures = len(self.history)
        if failures == 0:
            return 0.0
        value = self.first_delay * (2 ** (failures - 1))
        if self.backoff_jitter:
            import random

            value += random.random() * self.backoff_jitter
        return float(max(0.0, min(self.backoff_max, value)))

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if not self._is_method_retryable(method):
            return False
        attempt = last_attempt()
        hint = attempt.should_retry if attempt is not None and attempt.status == status_code else None
        return answers.should_retry(status_code, {"Stripe-Should-Retry": hint or ""}, method=method)

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        new = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None and answers.classify(response.status) == "conflict":
            # The gateway is still working on our first try under this key and executed
            # nothing for this one: waiting for its answer costs no try, only time, and the
            # deadline below bounds that (Stripe: a 409 in progress is safe to retry).
            new = new.new(total=self.total, status=self.status)
        limit = getattr(_deadline, "value", None)
        if limit is not None:
            deadline, budget = limit
            wait = new.get_backoff_time()
            if response is not None and new.respect_retry_after_header:
                wait = max(wait, new.get_retry_after(response) or 0.0)
            if time.monotonic() + wait + budget > deadline:
                raise MaxRetryError(_pool, url, error or DeadlineExceeded("payment deadline reached"))
        return new
