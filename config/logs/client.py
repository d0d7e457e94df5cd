"""The boto3 CloudWatch Logs client: bounded calls, built lazily, failures classified."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

_TRANSIENT = (HTTPClientError, BotoConnectionError, NoCredentialsError, CredentialRetrievalError)
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "InternalFailure", "RequestTimeout",
     "RequestTimeoutException", "LimitExceededException"}
)


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


class LazyClient:
    """Builds the client on first use, which is in the sender thread: creating a boto3
    client resolves credentials, and on a host without them in the environment that is
    an HTTP call to the instance metadata service, which start-up must not wait for."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
        return getattr(self._client, name)

    def fresh(self) -> LazyClient:
        """A new, unbuilt client from the same factory: what a forked child must use, since
        the parent's connections and lock are not its own."""
        return LazyClient(self._factory)

    def reset(self) -> None:
        """Forgets the client; the next use builds a new one (and resolves credentials again)."""
        with self._lock:
            self._client = None


def _emf_header(request: Any, **_: Any) -> None:
    request.headers["x-amzn-logs-format"] = "json/emf"


def is_transient(exc: Exception) -> bool:
    """True for failures worth another try later: network, credentials, throttling, 5xx."""
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500
    return False
