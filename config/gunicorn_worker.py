"""gunicorn's gthread worker with a thread pool per lane (config/lanes.py): probes, the
console and the payment API never wait for each other's threads. It keeps count of the API
lane's threads and stamps each request with the time it waited for one (config/queueing.py).
Procfile's web process runs it through config/gunicorn.py."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker

from config import lanes, queueing
from config.shutdown import shutdown_begin


def _lane_threads(name: str, default: int) -> int:
    # Read here, where gunicorn builds the pools before Django starts; config/settings.py
    # validates the same variables for every process.
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


class ThreadWorker(GthreadWorker):
    def init_process(self) -> None:
        queueing.serving(self.cfg.threads)
        self.lane_pools = {
            lanes.PROBE: futures.ThreadPoolExecutor(_lane_threads("WEB_PROBE_THREADS", 2), "probe"),
            lanes.OPS: futures.ThreadPoolExecutor(_lane_threads("WEB_OPS_THREADS", 2), "ops"),
        }
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # SIGTERM: requests already queued are still served; readiness among them says 503.
        shutdown_begin()
        super().handle_exit(sig, frame)

    def accept(self, listener: Any) -> None:
        # A new connection waits on the poller until its request's first bytes arrive, so the
        # request line picks its lane; gthread would hand it to a thread at once.
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def enqueue_req(self, conn: Any) -> None:
        # Called on the main thread when a request is ready to read (a new connection, or a
        # kept-alive one that became readable): from here it waits for a thread of its lane.
        conn.payops_lane = _peek_lane(conn)
        conn.payops_queued_at = time.monotonic()
        pool = self.lane_pools.get(conn.payops_lane)
        if pool is None and queueing.waiting() >= self.cfg.threads:
            # A whole round of requests already waits for an API thread: the CPUs are behind.
            # Refused here, on the accept loop, costing no thread and next to no CPU; started,
            # it would only wait past PAYMENT_QUEUE_TIMEOUT and be refused then.
            queueing.shed()
            self.nr_conns -= 1
            _refuse_busy(conn)
            return
        if pool is None:
            queueing.enqueued()
            super().enqueue_req(conn)
            return
        future = pool.submit(self.handle, conn)
        future.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def handle(self, conn: Any) -> Any:
        queued_at = getattr(conn, "payops_queued_at", None)
        waited = time.monotonic() - queued_at if queued_at is not None else 0.0
        if getattr(conn, "payops_lane", lanes.APP) == lanes.APP:
            queueing.picked_up(waited)
        else:
            queueing.picked_up_reserved(waited)
        try:
            return super().handle(conn)
        finally:
            queueing.released()

    def handle_request(self, req: Any, conn: Any) -> Any:
        counted = getattr(conn, "payops_lane", lanes.APP) == lanes.APP
        if counted:
            queueing.request_started()
        try:
            return super().handle_request(req, conn)
        finally:
            if counted:
                queueing.request_finished()

    def handle_quit(self, sig: Any, frame: Any) -> None:
        for pool in self.lane_pools.values():
            pool.shutdown(wait=False)
        super().handle_quit(sig, frame)


BUSY_BODY = (b'{"error": {"type": "api_error", "code": "server_busy", "param": null, "message": '
             b'"The server is busy; nothing was done. Retry with the same Idempotency-Key."}}')
BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY))


def _refuse_busy(conn: Any) -> None:
    """Answer 503 server_busy and close, on the main thread (the socket is non-blocking)."""
    sock = conn.sock
    try:
        sock.send(BUSY_RESPONSE)
        # Read what the client sent, so that closing does not reset the connection (and
        # discard the answer) over unread bytes; a small JSON request is all there by now.
        for _ in range(4):
            if not sock.recv(65536):
                break
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()


def _peek_lane(conn: Any) -> str:
    """The lane from the bytes waiting on the socket, read without consuming them."""
    buffered = conn.parser.unreader.buf.getvalue() if conn.parser is not None else b""
    if buffered:
        return lanes.lane_of(buffered[: lanes.PEEK_BYTES])
    if conn.cfg.is_ssl:
        return lanes.APP  # encrypted until a thread does the handshake
    try:
        head = conn.sock.recv(lanes.PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return lanes.APP
    return lanes.lane_of(head)
