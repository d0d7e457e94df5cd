"""The recorded floor: the floor plus the least the design's durability asks for. Per
payment, one autocommitted INSERT of the payment in `processing` under the client's
Idempotency-Key (unique) before the gateway call, the call on a pooled urllib3 connection
with that key, and one autocommitted UPDATE with the answer; a bare WSGI callable.

What it leaves out, which ours does: API keys, the shared rate limit, a repeat's replay or
conflict (a repeated key is a 409 here, nothing kept), attempt rows, the breaker, retries
and the deadline, the requests Session, logging, settlement, Django. The gap between it and
the floor is what recording a payment before and after the call costs by itself; the gap
between ours and it is everything else (docs/reliability.md, "1. Load")."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import psycopg
import psycopg_pool
import urllib3

from bench.fleet.baseline.table import RECORDED_TABLE

_threads = int(os.environ.get("GUNICORN_THREADS", "8"))
_gateway = os.environ["PAYMENT_GATEWAY_URL"].rstrip("/")
_auth = f"Bearer {os.environ['PAYMENT_GATEWAY_API_KEY']}"
_http = urllib3.PoolManager(maxsize=_threads, block=True, timeout=urllib3.Timeout(connect=3, read=10))
_db: psycopg_pool.ConnectionPool | None = None

_OPEN = (f"INSERT INTO {RECORDED_TABLE} (idempotency_key, amount, currency, status) "
         "VALUES (%s, %s, %s, 'processing') RETURNING id")
_APPLY = f"UPDATE {RECORDED_TABLE} SET status = %s, gateway_id = %s WHERE id = %s AND status = 'processing'"


def _pool() -> psycopg_pool.ConnectionPool:
    # Opened on first use, in the gunicorn worker (not before the fork); autocommit, so each
    # statement is its own transaction (one round trip), as ours does.
    global _db
    if _db is None:
        _db = psycopg_pool.ConnectionPool(os.environ["DATABASE_URL"], min_size=1, max_size=_threads, open=True,
                                          kwargs={"autocommit": True})
    return _db


def _answer(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> Iterable[bytes]:
    out = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    data = json.loads(body)
    key = environ.get("HTTP_IDEMPOTENCY_KEY", "")
    try:
        with _pool().connection() as conn:
            (row_id,) = conn.execute(_OPEN, [key, data["amount"], data["currency"]]).fetchone()
    except psycopg.errors.UniqueViolation:
        return _answer(start_response, "409 Conflict", {"error": "repeated Idempotency-Key"})
    answer = _http.request("POST", f"{_gateway}/v1/payment_intents", headers={
        "Authorization": _auth, "Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": key,
    }, body=urlencode({"amount": data["amount"], "currency": data["currency"],
                       "payment_method": data["payment_method"], "confirm": "true"}))
    intent = json.loads(answer.data)
    with _pool().connection() as conn:
        conn.execute(_APPLY, [intent["status"], intent["id"], row_id])
    return _answer(start_response, "201 Created",
                   {"id": row_id, "gateway_id": intent["id"], "status": intent["status"]})
