"""The general-purpose outbound HTTP client (notification webhooks, other APIs).

Per host at most HTTP_MAX_CONNECTIONS_PER_HOST connections; across hosts at most
HTTP_MAX_CONNECTIONS requests in flight (a semaphore, so a slow host cannot soak up every
thread); idle connections are dropped after IDLE_SECONDS.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests
from django.conf import settings
from urllib3.exceptions import EmptyPoolError, ReadTimeoutError
from urllib3.util import Retry

from config.http.pools import InstrumentedAdapter

logger = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # s an unused pooled connection is kept


class OutboundPoolFull(requests.exceptions.ConnectionError):
    """Every one of the global in-flight slots stayed busy for the whole wait."""


class OutboundClient:
    def __init__(self, *, max_connections: int, per_host: int, timeout: float, retries: int) -> None:
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._last_used = time.monotonic()
        self.session = requests.Session()
        self.session.trust_env = False
        retry = Retry(total=retries - 1, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504),
                      allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
                      respect_retry_after_header=True, raise_on_status=False)
        self.adapter = InstrumentedAdapter("outbound", pool_connections=32, pool_maxsize=per_host,
                                           pool_block=True, pool_wait=timeout, max_retries=retry)
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)

    def request(self, method: str, url: str, *, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        timeout = timeout or self.timeout
        if time.monotonic() - self._last_used > IDLE_SECONDS:
            # Idle connections are likely closed by the peer or a NAT by now.
            self.adapter.poolmanager.clear()
        self._last_used = time.monotonic()
        if not self._slots.acquire(timeout=timeout):
            logger.warning("outbound HTTP in-flight cap reached", extra={"category": "http_pool_full", "url_host": url.split("/")[2] if "//" in url else url})
            raise OutboundPoolFull(f"no outbound slot free within {timeout:.1f}s")
        try:
            return self.session.request(method, url, timeout=(min(3.0, timeout), timeout), **kwargs)
        except requests.exceptions.ConnectionError as exc:
            # With a Retry object, requests reports an exhausted read timeout as a
            # ConnectionError; callers should see the timeout it was.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, ReadTimeoutError):
                raise requests.exceptions.ReadTimeout(str(reason), request=exc.request) from exc
            raise
        except EmptyPoolError as exc:
            # requests lets urllib3's "no pooled connection for this host came free" through as
            # it is; callers handle one kind of "pool full".
            raise OutboundPoolFull(f"no pooled connection to the host free within {timeout:.1f}s") from exc
        finally:
            self._slots.release()

    def post(self, url: str, *, json: dict, timeout: float | None = None) -> requests.Response:
        return self.request("POST", url, json=json, timeout=timeout)

    def get(self, url: str, *, timeout: float | None = None) -> requests.Response:
        return self.request("GET", url, timeout=timeout)


_lock = threading.Lock()
_client: OutboundClient | None = None


def get_outbound() -> OutboundClient:
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = OutboundClient(
                    max_connections=settings.HTTP_MAX_CONNECTIONS,
                    per_host=settings.HTTP_MAX_CONNECTIONS_PER_HOST,
                    timeout=settings.HTTP_REQUEST_TIMEOUT,
                    retries=settings.HTTP_RETRY_ATTEMPTS,
                )
    return _client
