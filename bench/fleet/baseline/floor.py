"""The floor: per payment, one call on a pooled urllib3 connection and one INSERT on a pooled
psycopg connection, in a bare WSGI callable. Nothing is checked, retried or recorded beyond
that row: no framework, no idempotency, no breaker, no attempt history, no logging."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import psycopg_pool
import urllib3

from bench.fleet.baseline.table import TABLE

_threads = int(os.environ.get("GUNICORN_THREADS", "8"))
_gateway = os.environ["PAYMENT_GATEWAY_URL"].rstrip("/")
_headers = {"Authorization": f"Bearer {os.environ['PAYMENT_GATEWAY_API_KEY']}",
            "Content-Type": "application/x-www-form-urlencoded"}
_http = urllib3.PoolManager(maxsize=_threads, block=True, timeout=urllib3.Timeout(connect=3, read=10))
_db: psycopg_pool.ConnectionPool | None = None


def _pool() -> psycopg_pool.ConnectionPool:
    # Opened on first use, in the gunicorn worker (not before the fork).
    global _db
    if _db is None:
        _db = psycopg_pool.ConnectionPool(os.environ["DATABASE_URL"], min_size=1, max_size=_threads, open=True)
    return _db


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    data = json.loads(body)
    answer = _http.request("POST", f"{_gateway}/v1/payment_intents", headers=_headers, body=urlencode({
        "amount": data["amount"], "currency": data["currency"], "payment_method": data["payment_method"],
        "confirm": "true"}))
    intent = json.loads(answer.data)
    with _pool().connection() as conn:
        (row_id,) = conn.execute(
            f"INSERT INTO {TABLE} (gateway_id, amount, currency, status) VALUES (%s, %s, %s, %s) RETURNING id",
            [intent["id"], intent["amount"], intent["currency"], intent["status"]]).fetchone()
    out = json.dumps({"id": row_id, "gateway_id": intent["id"], "status": intent["status"]}).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
