"""The proxy's client towards the gateway (localstripe): pooled keep-alive via aiohttp."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from sandbox.http11 import Request, Response

# Hop-by-hop headers (RFC 9110 7.6.1) and framing we recompute ourselves.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
# Response headers the proxy writes itself.
_OWN_RESPONSE_HEADERS = _HOP_BY_HOP | {"content-type", "date", "server"}
# Internal service key used for the proxy's own reads (localstripe accepts any sk_ key).
SANDBOX_KEY = "sk_test_sandbox_proxy"


class UpstreamUnavailable(Exception):
    """No answer came back from the gateway (refused, reset, timed out)."""


class Upstream:
    def __init__(self, base_url: str, *, timeout: float = 60.0, pool_size: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30),
            timeout=self._timeout,
            auto_decompress=False,  # pass bytes through exactly as the gateway sent them
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, req: Request) -> Response:
        assert self._session is not None, "Upstream.start() not called"
        headers = [(k, v) for k, v in req.headers if k.lower() not in _HOP_BY_HOP]
        try:
            async with self._session.request(
                req.method,
                self.base_url + req.target,
                headers=headers,
                data=req.body or None,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                content_type = resp.headers.get("Content-Type", "application/json")
                kept = [(k, v) for k, v in resp.headers.items() if k.lower() not in _OWN_RESPONSE_HEADERS]
                return Response(resp.status, body, kept, content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def get_json(self, target: str) -> Any:
        """A read of the proxy's own (intents listing); not counted as forwarded traffic."""
        req = Request("GET", target, "HTTP/1.1", [("Authorization", f"Bearer {SANDBOX_KEY}")])
        resp = await self.forward(req)
        if resp.status != 200:
            raise UpstreamUnavailable(f"GET {target} answered {resp.status}: {resp.body[:200]!r}")
        return json.loads(resp.body)

    async def flush(self) -> None:
        """Empty localstripe's store (its DELETE /_config/data)."""
        resp = await self.forward(Request("DELETE", "/_config/data", "HTTP/1.1", []))
        if resp.status != 200:
            raise UpstreamUnavailable(f"DELETE /_config/data answered {resp.status}")
