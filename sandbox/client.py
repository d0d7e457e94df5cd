"""A stdlib client for the proxy's control API, shared by the CLI and the test harness.

stdlib (urllib) so the CLI works from any Python, and with environment proxies turned
off: an engineer's HTTP_PROXY must never capture loopback control calls.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, cast
from urllib.parse import urlencode

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


class ControlClient:
    def __init__(self, proxy_url: str, *, timeout: float = 10.0, refused_grace: float = 0.0) -> None:
        """refused_grace: seconds to keep retrying a refused connection, because during a
        `refuse` fault the control API is behind the same closed port."""
        self.proxy_url = proxy_url.rstrip("/")
        self.timeout = timeout
        self.refused_grace = refused_grace

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.proxy_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        deadline = time.monotonic() + self.refused_grace
        while True:
            try:
                with _OPENER.open(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                raise ControlError(exc.code, exc.read().decode("utf-8", "replace")) from None
            except urllib.error.URLError as exc:
                refused = isinstance(exc.reason, ConnectionRefusedError)
                if not refused or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def fault(self, kind: str, **rule: Any) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("POST", "/_sandbox/faults", {"kind": kind, **rule}))

    def faults(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("GET", "/_sandbox/faults"))

    def clear(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("DELETE", "/_sandbox/faults"))

    def stats(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("GET", "/_sandbox/stats"))

    def reset(self, upstream: bool = False) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("POST", "/_sandbox/reset", {"upstream": upstream}))

    def set_fast(self, fast: bool) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("POST", "/_sandbox/mode", {"fast": fast}))

    def intents_for(self, metadata_key: str, value: str) -> list[dict[str, Any]]:
        query = urlencode({"metadata_key": metadata_key, "value": value})
        return cast(list[dict[str, Any]], self.call("GET", f"/_sandbox/intents?{query}")["data"])

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.call("GET", "/_sandbox/health"))
