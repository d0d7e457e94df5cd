"""The proxy's listening socket and the connections it accepted.

`refuse` closes the socket for a while, a real closed port: new connections get
ECONNREFUSED from the kernel, and the socket is bound again on the same port afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sandbox.http11 import MAX_HEADER_BYTES

log = logging.getLogger("sandbox.proxy")


@dataclass(eq=False)
class Conn:
    writer: asyncio.StreamWriter
    busy: bool = False
    counted: bool = False  # carried a gateway request (see Stats.connections_opened)


ConnectionHandler = Callable[[asyncio.StreamReader, Conn], Awaitable[None]]


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR so the listener can be reopened on the same port after `refuse`,
    # while the previous connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Listener:
    def __init__(self, host: str, port: int, handler: ConnectionHandler) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self.conns: set[Conn] = set()
        self._server: asyncio.Server | None = None
        self.draining = False  # closed by `refuse`: connections finish their request and close
        self._refuse_until = 0.0
        self._reopen_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        sock = bind_listener(self.host, self.port)
        self.port = sock.getsockname()[1]  # port 0 -> the one the OS chose
        await self._serve_on(sock)

    async def stop(self) -> None:
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns):
            conn.writer.close()

    async def _serve_on(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._accepted, sock=sock, limit=MAX_HEADER_BYTES, backlog=1024)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(writer)
        self.conns.add(conn)
        try:
            await self._handler(reader, conn)
        finally:
            self.conns.discard(conn)

    @property
    def refusing_for_ms(self) -> int:
        if not self.draining:
            return 0
        return max(0, int((self._refuse_until - asyncio.get_running_loop().time()) * 1000))

    async def refuse_for(self, seconds: float) -> None:
        """Close the listening socket for `seconds`: new connections get ECONNREFUSED.

        Idle keep-alive connections are closed too (a FIN, as a restarting server does),
        otherwise a pooled client would keep talking over them and never see the refusal;
        urllib3 notices the FIN before reusing a connection, dials again and is refused.
        Connections busy with a request finish it and then close.
        """
        loop = asyncio.get_running_loop()
        self._refuse_until = max(self._refuse_until, loop.time() + seconds)
        self.draining = True
        if self._server is not None:
            self._server.close()
            self._server = None
        idle = [conn.writer for conn in self.conns if not conn.busy]
        for writer in idle:
            writer.close()
        if self._reopen_task is None:
            self._reopen_task = loop.create_task(self._reopen_later())
        # close() only schedules the socket's close; wait for the FINs to be out before
        # the control API confirms, or a client could reuse a connection in between.
        if idle:
            await asyncio.wait([loop.create_task(writer.wait_closed()) for writer in idle], timeout=1.0)

    async def _reopen_later(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (delay := self._refuse_until - loop.time()) > 0:
                await asyncio.sleep(delay)
            for _ in range(50):
                try:
                    sock = bind_listener(self.host, self.port)
                    break
                except OSError as exc:  # someone grabbed the port meanwhile: very unlikely
                    log.warning("reopening %s failed (%s), retrying", self.url, exc)
                    await asyncio.sleep(0.1)
            else:
                log.error("could not reopen %s after refuse; proxy stays closed", self.url)
                return
            self.draining = False
            await self._serve_on(sock)
        finally:
            self._reopen_task = None
