"""The proxy in front of localstripe: Stripe's idempotency contract plus fault injection.

Raw asyncio TCP server (see http11.py for why not a framework), HTTP/1.1 keep-alive,
loopback only. Requests under /_sandbox/ are the control API (control.py) and are never
forwarded or faulted. Everything else goes:

    fault rule? -> idempotency -> fast mode or the gateway -> fault rule's afterlife -> client

The socket and its `refuse` fault live in listener.py, what persists between requests in
state.py, the answer under idempotency in answers.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct

from sandbox.answers import gateway_answer
from sandbox.control import handle_control
from sandbox.errors import stripe_error
from sandbox.faults import LOCAL_KINDS, canned_answer
from sandbox.http11 import BadRequest, Request, Response, read_request, render, render_head
from sandbox.listener import Conn, Listener
from sandbox.state import ProxyState
from sandbox.upstream import Upstream

log = logging.getLogger("sandbox.proxy")
CONTROL_PREFIX = "/_sandbox/"


class ProxyServer:
    def __init__(self, host: str, port: int, upstream_url: str, *, fast: bool = False) -> None:
        self.listener = Listener(host, port, self._on_connection)
        self.state = ProxyState(upstream=Upstream(upstream_url), listener=self.listener, fast_mode=fast)

    @property
    def url(self) -> str:
        return self.listener.url

    async def start(self) -> None:
        await self.state.upstream.start()
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await self.state.upstream.close()

    # ---- connections ----------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, conn: Conn) -> None:
        stats = self.state.stats
        try:
            while not self.listener.draining:
                conn.busy = False
                try:
                    req = await read_request(reader, conn.writer)
                except BadRequest as exc:
                    await self._send(conn, stripe_error(400, "invalid_request_error", f"sandbox proxy: {exc}"), False)
                    break
                except (ConnectionError, OSError):
                    break
                if req is None:
                    break
                conn.busy = True
                if req.path.startswith(CONTROL_PREFIX):
                    resp = await handle_control(self.state, req)
                    keep = await self._send(conn, resp, req.keep_alive)
                else:
                    if not conn.counted:
                        conn.counted = True
                        stats.connections_opened += 1
                        stats.connections_open += 1
                    keep = await self._serve_gateway_request(req, conn)
                if not keep:
                    break
        except Exception:  # one broken connection must never take the proxy down
            log.exception("connection handler failed")
        finally:
            if conn.counted:
                stats.connections_open -= 1
            if not conn.writer.is_closing():
                conn.writer.close()

    async def _send(self, conn: Conn, resp: Response, keep_alive: bool) -> bool:
        """Write a whole answer; True when the connection stays open for the next request."""
        keep = keep_alive and not self.listener.draining
        try:
            conn.writer.write(render(resp, keep_alive=keep))
            await conn.writer.drain()
        except (ConnectionError, OSError):
            return False  # the client left (e.g. it timed out during `latency`)
        return keep

    @staticmethod
    def _reset(conn: Conn) -> None:
        """Close with RST, not FIN: SO_LINGER on with a zero timeout, then close."""
        sock = conn.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        conn.writer.transport.abort()

    async def _send_truncated(self, conn: Conn, resp: Response) -> None:
        """Headers promising the whole body, half of it, then a clean close (FIN)."""
        body = resp.body or b"{}"
        try:
            conn.writer.write(render_head(resp, keep_alive=False, content_length=len(body)) + body[: len(body) // 2])
            await conn.writer.drain()
        except (ConnectionError, OSError):
            pass
        conn.writer.close()

    @staticmethod
    def _malformed(resp: Response) -> Response:
        broken = resp.body[: len(resp.body) // 2]
        try:
            json.loads(broken)
            broken = b"<html><body>upstream sent garbage</body></html>"
        except ValueError:
            pass
        return Response(200, broken, list(resp.headers), "application/json")

    # ---- gateway requests -----------------------------------------------------------

    async def _serve_gateway_request(self, req: Request, conn: Conn) -> bool:
        stats = self.state.stats
        stats.requests += 1
        stats.in_flight += 1
        try:
            rule = self.state.faults.take(req.method, req.path)
            kind = rule.kind if rule is not None else None
            hold = 0.0  # `slow`: time the gateway "spends" processing, key claimed
            if rule is not None and kind == "latency_before":
                # The request is slow "in the network": idempotency and the gateway only
                # see it afterwards, even if the client has given up meanwhile.
                await asyncio.sleep(rule.delay_ms / 1000)
                rule = kind = None
            elif rule is not None and kind == "slow":
                hold = rule.delay_ms / 1000
                rule = kind = None
            elif rule is not None and kind in LOCAL_KINDS:
                if kind == "reset_before":
                    self._reset(conn)
                    return False
                return await self._send(conn, canned_answer(rule), req.keep_alive)

            try:
                resp = await gateway_answer(state=self.state, req=req, hold=hold)
            except Exception:  # a bug of ours must read as one, not as a network fault
                log.exception("answering %s %s failed", req.method, req.path)
                resp = stripe_error(500, "api_error", "sandbox proxy internal error (see its log)")

            if rule is None:
                return await self._send(conn, resp, req.keep_alive)
            if kind == "latency":
                await asyncio.sleep(rule.delay_ms / 1000)
                return await self._send(conn, resp, req.keep_alive)
            if kind in ("reset_after", "lose_answer"):
                self._reset(conn)
                return False
            if kind == "truncate":
                await self._send_truncated(conn, resp)
                return False
            if kind == "malformed":
                return await self._send(conn, self._malformed(resp), req.keep_alive)
            raise AssertionError(f"unhandled fault kind {kind}")
        finally:
            stats.in_flight -= 1


async def serve(
    host: str,
    port: int,
    upstream_url: str,
    *,
    fast: bool = False,
    ready_file: str | None = None,
    parent_pid: int | None = None,
) -> None:
    from sandbox.procutil import wait_for_stop, write_ready_file

    proxy = ProxyServer(host, port, upstream_url, fast=fast)
    await proxy.start()
    print(f"sandbox proxy listening on {proxy.url} -> {upstream_url}", flush=True)
    if ready_file:
        write_ready_file(ready_file, proxy.url)
    try:
        await wait_for_stop(parent_pid)
    finally:
        await proxy.stop()
