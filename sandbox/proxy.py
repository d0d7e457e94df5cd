"""The proxy in front of localstripe: Stripe's idempotency contract plus fault injection.

Raw asyncio TCP server (see http11.py for why not a framework), HTTP/1.1 keep-alive,
loopback only. Requests under /_sandbox/ are the control API (control.py) and are never
forwarded or faulted. Everything else goes:

    fault rule? -> idempotency -> fast mode or the gateway -> fault rule's afterlife -> client
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import string
import struct
from dataclasses import asdict, dataclass

from sandbox.control import handle_control
from sandbox.errors import stripe_error
from sandbox.fast import FastGateway
from sandbox.faults import LOCAL_KINDS, FaultBook, FaultRule, canned_answer
from sandbox.http11 import MAX_HEADER_BYTES, BadRequest, Request, Response, read_request, render, render_head
from sandbox.idempotency import MAX_KEY_LENGTH, IdempotencyStore, Outcome, fingerprint_of, scope_of
from sandbox.upstream import Upstream, UpstreamUnavailable

log = logging.getLogger("sandbox.proxy")
CONTROL_PREFIX = "/_sandbox/"
_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Stats:
    connections_opened: int = 0  # connections that carried at least one gateway request
    requests: int = 0  # gateway requests (the control API is not counted)
    forwarded: int = 0  # answered by the gateway
    replayed: int = 0  # answered from the idempotency store
    answered_locally: int = 0  # answered by fast mode
    upstream_errors: int = 0  # the gateway gave no answer
    in_flight: int = 0  # gauge: gateway requests being handled now
    connections_open: int = 0  # gauge: open connections among connections_opened

    def reset(self) -> None:
        # Gauges describe the present, not history: keep them.
        in_flight, open_ = self.in_flight, self.connections_open
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)
        self.in_flight, self.connections_open = in_flight, open_


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    busy: bool = False
    counted: bool = False  # carried a gateway request (see Stats.connections_opened)


def _request_id() -> str:
    return "req_" + "".join(random.choices(_ALPHABET, k=14))


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


class ProxyServer:
    def __init__(self, host: str, port: int, upstream_url: str, *, fast: bool = False) -> None:
        self.host = host
        self.port = port
        self.upstream = Upstream(upstream_url)
        self.faults = FaultBook()
        self.idempotency = IdempotencyStore()
        self.fast = FastGateway()
        self.fast_mode = fast
        self.stats = Stats()
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._draining = False  # listener closed by `refuse`: finish and close connections
        self._refuse_until = 0.0
        self._reopen_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.upstream.start()
        sock = bind_listener(self.host, self.port)
        self.port = sock.getsockname()[1]  # port 0 -> the one the OS chose
        await self._serve_on(sock)

    async def stop(self) -> None:
        if self._reopen_task is not None:
            self._reopen_task.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.writer.close()
        await self.upstream.close()

    async def _serve_on(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, sock=sock, limit=MAX_HEADER_BYTES, backlog=1024
        )

    # ---- refuse: a real closed port -------------------------------------------------

    @property
    def refusing_for_ms(self) -> int:
        if not self._draining:
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
        self._draining = True
        if self._server is not None:
            self._server.close()
            self._server = None
        idle = [conn.writer for conn in self._conns if not conn.busy]
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
            self._draining = False
            await self._serve_on(sock)
        finally:
            self._reopen_task = None

    # ---- connections ----------------------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            while not self._draining:
                conn.busy = False
                try:
                    req = await read_request(reader, writer)
                except BadRequest as exc:
                    await self._send(conn, stripe_error(400, "invalid_request_error", f"sandbox proxy: {exc}"), False)
                    break
                except (ConnectionError, OSError):
                    break
                if req is None:
                    break
                conn.busy = True
                if req.path.startswith(CONTROL_PREFIX):
                    resp = await handle_control(self, req)
                    keep = await self._send(conn, resp, req.keep_alive)
                else:
                    if not conn.counted:
                        conn.counted = True
                        self.stats.connections_opened += 1
                        self.stats.connections_open += 1
                    keep = await self._serve_gateway_request(req, conn)
                if not keep:
                    break
        except Exception:  # one broken connection must never take the proxy down
            log.exception("connection handler failed")
        finally:
            self._conns.discard(conn)
            if conn.counted:
                self.stats.connections_open -= 1
            if not writer.is_closing():
                writer.close()

    async def _send(self, conn: _Conn, resp: Response, keep_alive: bool) -> bool:
        """Write a whole answer; True when the connection stays open for the next request."""
        keep = keep_alive and not self._draining
        try:
            conn.writer.write(render(resp, keep_alive=keep))
            await conn.writer.drain()
        except (ConnectionError, OSError):
            return False  # the client left (e.g. it timed out during `latency`)
        return keep

    @staticmethod
    def _reset(conn: _Conn) -> None:
        """Close with RST, not FIN: SO_LINGER on with a zero timeout, then close."""
        sock = conn.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        conn.writer.transport.abort()

    async def _send_truncated(self, conn: _Conn, resp: Response) -> None:
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

    async def _serve_gateway_request(self, req: Request, conn: _Conn) -> bool:
        self.stats.requests += 1
        self.stats.in_flight += 1
        try:
            rule = self.faults.take(req.method, req.path)
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
                resp = await self._answer(req, hold)
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
            self.stats.in_flight -= 1

    async def _answer(self, req: Request, hold: float = 0.0) -> Response:
        """The gateway's answer to `req`, under Stripe's idempotency contract."""
        key = req.header("idempotency-key") if req.method == "POST" else None
        if not key:
            if hold:
                await asyncio.sleep(hold)
            return await self._dispatch(req)
        if len(key) > MAX_KEY_LENGTH:
            return stripe_error(
                400, "invalid_request_error", f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters."
            )

        scope, fingerprint = scope_of(req), fingerprint_of(req)
        outcome, saved = self.idempotency.begin(scope, key, fingerprint)
        if outcome is Outcome.REPLAY:
            assert saved is not None
            self.stats.replayed += 1
            return saved.with_headers(
                ("Idempotent-Replayed", "true"),
                ("Original-Request", saved.header("Request-Id") or ""),
                ("Request-Id", _request_id()),
            )
        if outcome is Outcome.MISMATCH:
            return stripe_error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first "
                f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
            )
        if outcome is Outcome.IN_USE:
            return stripe_error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this idempotency key (that probably "
                "means you submitted twice, and the other request is still going through). Please try again later.",
                code="idempotency_key_in_use",
            )

        done = False
        try:
            if hold:
                await asyncio.sleep(hold)
            resp = (await self._dispatch(req)).with_headers(("Idempotency-Key", key))
            # Saved now, before any fault drops it on the way back: Stripe's behaviour.
            self.idempotency.complete(scope, key, resp)
            done = True
            return resp
        finally:
            if not done:  # cancelled mid-flight: free the key
                self.idempotency.abandon(scope, key)

    async def _dispatch(self, req: Request) -> Response:
        if self.fast_mode and self.fast.handles(req.method, req.path):
            self.stats.answered_locally += 1
            resp = self.fast.answer(req)
        else:
            try:
                resp = await self.upstream.forward(req)
            except UpstreamUnavailable as exc:
                self.stats.upstream_errors += 1
                return stripe_error(502, "api_error", f"sandbox proxy: the gateway did not answer ({exc})")
            self.stats.forwarded += 1
        if resp.status == 402:
            resp = await self._card_error(resp)
        return resp.with_headers(("Request-Id", _request_id()))

    async def _card_error(self, resp: Response) -> Response:
        """localstripe's decline (402, `invalid_request_error`) in Stripe's shape: a `card_error`
        with a `decline_code`, the PaymentIntent it left behind, and `Stripe-Should-Retry: false`."""
        try:
            error = json.loads(resp.body)["error"]
        except (ValueError, KeyError, TypeError):
            return resp
        error["type"] = "card_error"
        error.setdefault("code", "card_declined")
        error.setdefault("decline_code", "generic_decline")
        charge = error.get("charge")
        if isinstance(charge, str) and not self.fast_mode:
            try:
                intent_id = (await self.upstream.get_json(f"/v1/charges/{charge}")).get("payment_intent")
                if isinstance(intent_id, str):
                    error["payment_intent"] = await self.upstream.get_json(f"/v1/payment_intents/{intent_id}")
            except (UpstreamUnavailable, ValueError):
                pass  # the intent only adds detail: the decline stands without it
        body = json.dumps({"error": error}).encode()
        return Response(402, body, [*resp.headers, ("Stripe-Should-Retry", "false")], resp.content_type)

    # ---- used by the control API ----------------------------------------------------

    def stats_dict(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self.stats)
        data["faults_applied"] = dict(self.faults.applied)
        data["fast"] = self.fast_mode
        data["idempotency_keys"] = len(self.idempotency)
        data["refusing_for_ms"] = self.refusing_for_ms
        return data

    async def add_fault(self, rule: FaultRule) -> FaultRule:
        if rule.kind == "refuse":
            # Applied at once rather than stored: no request will arrive to trigger it.
            self.faults.add(rule)
            self.faults.record(rule)
            await self.refuse_for((rule.duration_ms or 0) / 1000)
            return rule
        return self.faults.add(rule)

    async def reset(self, *, upstream: bool) -> None:
        self.stats.reset()
        self.faults.clear()
        self.faults.reset_counts()
        self.idempotency.clear()
        self.fast.clear()
        if upstream:
            await self.upstream.flush()


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
