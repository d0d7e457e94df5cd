"""Just enough HTTP/1.1 for the proxy's client side.

The proxy speaks raw asyncio streams instead of an HTTP framework because its faults must
be real at the socket level: a reset must be an RST, a truncated answer must be headers
promising more bytes than are sent, a refused connection must be a closed listening
socket. A framework owns the socket and would "fix" exactly the things we break on
purpose. What we need of HTTP is small: request line, headers, a Content-Length or
chunked body, keep-alive, and writing a response with a Content-Length.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


class BadRequest(Exception):
    """The client sent something we cannot frame; answer 400 and close."""


@dataclass(slots=True)
class Request:
    method: str
    target: str  # path plus query string, as sent
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]]
    body: bytes = b""
    _index: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Later duplicates win; none of the headers we read may legitimately repeat.
        self._index = {name.lower(): value for name, value in self.headers}

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._index.get(name.lower(), default)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    def with_headers(self, *extra: tuple[str, str]) -> Response:
        names = {name.lower() for name, _ in extra}
        kept = [(k, v) for k, v in self.headers if k.lower() not in names]
        return Response(self.status, self.body, kept + list(extra), self.content_type)


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Read one request; None when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("connection closed inside the request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc

    lines = head[:-4].decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate stray CRLF between pipelined requests
        lines.pop(0)
    try:
        method, target, version = lines[0].split(" ")
    except (ValueError, IndexError) as exc:
        raise BadRequest("malformed request line") from exc
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("unsupported HTTP version")
    if target.startswith(("http://", "https://")):
        # absolute-form: keep only path and query
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"

    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header line")
        headers.append((name, value.strip()))

    req = Request(method.upper(), target, version, headers)

    if (req.header("expect") or "").lower() == "100-continue":
        # curl sends this for bodies over 1 KiB and waits a second for it otherwise.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    if "chunked" in (req.header("transfer-encoding") or "").lower():
        req.body = await _read_chunked(reader)
    else:
        length_header = req.header("content-length")
        if length_header:
            try:
                length = int(length_header)
            except ValueError as exc:
                raise BadRequest("bad Content-Length") from exc
            if length < 0 or length > MAX_BODY_BYTES:
                raise BadRequest("bad Content-Length")
            try:
                req.body = await reader.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                raise BadRequest("connection closed inside the body") from exc
    return req


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers, then the final empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        raise BadRequest("malformed chunked body") from exc


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """Date header value, formatted at most once a second (this is on the hot path)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def render_head(resp: Response, *, keep_alive: bool, content_length: int | None = None) -> bytes:
    """Status line and headers. content_length lets `truncate` promise more than it sends."""
    try:
        reason = HTTPStatus(resp.status).phrase
    except ValueError:
        reason = "Unknown"
    length = len(resp.body) if content_length is None else content_length
    lines = [
        f"HTTP/1.1 {resp.status} {reason}",
        "Server: sandbox-proxy",
        f"Date: {http_date()}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {length}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in resp.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def render(resp: Response, *, keep_alive: bool) -> bytes:
    return render_head(resp, keep_alive=keep_alive) + resp.body
