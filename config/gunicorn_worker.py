"""gunicorn's gthread worker, keeping count of its threads and stamping each request with
the time it waited for one (see config/queueing.py). Procfile's web process runs it through
config/gunicorn.py."""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker as GthreadWorker

from config import queueing
from config.shutdown import shutdown_begin


class ThreadWorker(GthreadWorker):
    def init_process(self) -> None:
        queueing.serving(self.cfg.threads)
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # SIGTERM: requests already queued are still served; readiness among them says 503.
        shutdown_begin()
        super().handle_exit(sig, frame)

    def enqueue_req(self, conn: Any) -> None:
        # Called on the main thread when a request is ready to read (a new connection, or a
        # kept-alive one that became readable): from here it waits for a free thread.
        conn.payops_queued_at = time.monotonic()
        queueing.enqueued()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        queued_at = getattr(conn, "payops_queued_at", None)
        queueing.picked_up(time.monotonic() - queued_at if queued_at is not None else 0.0)
        try:
            return super().handle(conn)
        finally:
            queueing.released()

    def handle_request(self, req: Any, conn: Any) -> Any:
        queueing.request_started()
        try:
            return super().handle_request(req, conn)
        finally:
            queueing.request_finished()
