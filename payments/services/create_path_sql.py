"""The payment-create path as single SQL statements.

Creating a payment is the one path every client call takes, so each of its database steps is
one statement: in autocommit a statement is its own transaction, one round trip instead of
BEGIN, the ORM's statements and COMMIT (10 round trips became 3; docs/reliability.md, "1.
Load"). They run as server-side prepared statements, planned once per pooled connection,
except behind PgBouncer (DB_PGBOUNCER), where the settings turn preparing off. Everything
else in the app uses the ORM; table names come from the models' Meta.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from django.db import connection, transaction

from config.postgres.answers_pool import answer_connection
from payments.gateway.results import Attempt
from payments.models import ApiClient, IdempotencyRecord, Payment, PaymentAttempt, PaymentStatus

PAYMENT = Payment._meta.db_table
RECORD = IdempotencyRecord._meta.db_table
ATTEMPT = PaymentAttempt._meta.db_table
CLIENT = ApiClient._meta.db_table

# The payment (already claimed for its first send) and the idempotency key's claim: both or
# neither. A repeat of the key violates a unique constraint and rolls back the whole statement.
_OPEN = f"""
WITH payment AS (
    INSERT INTO {PAYMENT} (id, client_id, idempotency_key, request_hash, amount, currency, payment_method,
                           reference, metadata, status, gateway_id, failure_code, failure_message,
                           amount_refunded, attempt_count, settle_count, next_settle_at, created, updated)
    VALUES (%(id)s, %(client_id)s, %(key)s, %(request_hash)s, %(amount)s, %(currency)s, %(payment_method)s,
            %(reference)s, %(metadata)s::jsonb, 'processing', NULL, '', '', 0, 0, 0, NULL, %(now)s, %(now)s)
    RETURNING id
)
INSERT INTO {RECORD} (client_id, key, endpoint, request_hash, resource_id, response_status, response_body,
                      locked_until, created)
SELECT %(client_id)s, %(key)s, %(endpoint)s, %(request_hash)s, payment.id, NULL, NULL, %(lease)s, %(now)s
FROM payment
RETURNING id
"""

# The first answer for a payment its request opened. Only the holder of the claim writes a
# processing payment with no attempts yet, so the WHERE is the lock; its attempts go in with it.
_APPLY = f"""
WITH applied AS (
    UPDATE {PAYMENT}
    SET status = %(status)s, failure_code = %(code)s, failure_message = %(message)s,
        attempt_count = %(attempt_count)s, updated = %(now)s,
        gateway_id = COALESCE(%(gateway_id)s, gateway_id),
        next_settle_at = CASE WHEN %(final)s THEN NULL ELSE next_settle_at END
    WHERE id = %(id)s AND status = 'processing' AND attempt_count = 0
    RETURNING id
){{attempts}}{{release}}
SELECT count(*) FROM applied
"""
_ATTEMPTS = f""",
attempts AS (
    INSERT INTO {ATTEMPT} (payment_id, number, operation, started_at, duration_ms, outcome, http_status,
                           gateway_request_id, error)
    SELECT applied.id, a.number, 'create', a.started_at, a.duration_ms, a.outcome, a.http_status, a.request_id,
           a.error
    FROM applied CROSS JOIN (VALUES {{rows}}) AS a(number, started_at, duration_ms, outcome, http_status,
                                                 request_id, error)
    RETURNING 1
)"""


def _attempt_row(i: int) -> str:
    return (f"(%(n{i})s::integer, %(t{i})s::timestamptz, %(d{i})s::double precision, %(o{i})s::varchar, "
            f"%(h{i})s::smallint, %(r{i})s::varchar, %(e{i})s::varchar)")


# A final answer (2xx, 4xx) is kept for replays; without one only the lease ends, so an answer
# another request kept after this one's lease ran out is never erased.
_RELEASE_SET = ("locked_until = NULL, response_status = COALESCE(%(response_status)s, response_status), "
                "response_body = COALESCE(%(response_body)s::jsonb, response_body)")
_RELEASE = f"UPDATE {RECORD} SET {_RELEASE_SET} WHERE id = %(record_id)s"
# The same, with the payment's first answer: only if that answer was written.
_APPLY_RELEASE = f""",
released AS (
    UPDATE {RECORD} SET {_RELEASE_SET}
    WHERE id = %(record_id)s AND EXISTS (SELECT 1 FROM applied)
    RETURNING 1
)"""

_AUTHENTICATE = f"""
SELECT id, name, prefix, key_hash, is_active, created, created_by_id, last_used_at, revoked_at
FROM {CLIENT} WHERE prefix = %s AND is_active
"""


def _run(conn: psycopg.Connection, sql: str, params: Sequence[Any] | dict[str, Any]) -> tuple[Any, ...] | None:
    # Django's cursors bind parameters client-side, which cannot be prepared; this one binds
    # them on the server. Errors come out as Django's (IntegrityError, OperationalError).
    with connection.wrap_database_errors, psycopg.Cursor(conn) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone() if cursor.description else None


def _execute(sql: str, params: Sequence[Any] | dict[str, Any], *, answer: bool = False) -> tuple[Any, ...] | None:
    """One statement, its first row. Outside a transaction it commits by itself; inside one
    (a caller's atomic block, a test case) a savepoint keeps a failed statement from spoiling
    the rest of the transaction, as the ORM's atomic() would. A gateway `answer` goes through
    the answers lane (config/postgres/answers_pool.py) unless it belongs to such a transaction."""
    if connection.in_atomic_block:
        with transaction.atomic():
            connection.ensure_connection()
            return _run(connection.connection, sql, params)
    if answer:
        with connection.wrap_database_errors, answer_connection() as conn:
            return _run(conn, sql, params)
    connection.ensure_connection()
    return _run(connection.connection, sql, params)


def _loaded(model: type, **fields: Any) -> Any:
    """A model instance for a row this module wrote or read: saved, not new."""
    instance = model(**fields)
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


def api_client_by_prefix(prefix: str) -> ApiClient | None:
    row = _execute(_AUTHENTICATE, [prefix])
    if row is None:
        return None
    names = ("id", "name", "prefix", "key_hash", "is_active", "created", "created_by_id", "last_used_at",
             "revoked_at")
    return _loaded(ApiClient, **dict(zip(names, row, strict=False)))


def payment_open(*, client: ApiClient, key: str, endpoint: str, request_hash: str, lease: datetime,
                 now: datetime, payment_id: str, amount: int, currency: str, payment_method: str, reference: str,
                 metadata: dict[str, str]) -> tuple[Payment, IdempotencyRecord]:
    """Inserts the payment in processing and the key's claim; IntegrityError if the key exists."""
    row = _execute(_OPEN, {
        "id": payment_id, "client_id": client.pk, "key": key, "request_hash": request_hash, "amount": amount,
        "currency": currency, "payment_method": payment_method, "reference": reference,
        "metadata": json.dumps(metadata), "now": now, "endpoint": endpoint, "lease": lease,
    })
    assert row is not None  # an INSERT … RETURNING that did not raise returned its row
    payment = _loaded(Payment, id=payment_id, client=client, idempotency_key=key, request_hash=request_hash,
                      amount=amount, currency=currency, payment_method=payment_method, reference=reference,
                      metadata=metadata, status=PaymentStatus.PROCESSING, gateway_id=None, failure_code="",
                      failure_message="", amount_refunded=0, attempt_count=0, settle_count=0, next_settle_at=None,
                      created=now, updated=now)
    record = _loaded(IdempotencyRecord, id=row[0], client=client, key=key, endpoint=endpoint,
                     request_hash=request_hash, resource_id=payment_id, response_status=None, response_body=None,
                     locked_until=lease, created=now)
    return payment, record


def payment_apply_first(*, payment_id: str, fields: dict[str, Any], attempts: Sequence[Attempt],
                        release: tuple[int, int | None, dict[str, Any] | None] | None = None) -> bool:
    """Writes the first answer and its attempts if the payment is still as its request opened
    it; False when it moved meanwhile (a settlement took it over). `release` (record id,
    answer status, body) ends the idempotency claim in the same statement."""
    params: dict[str, Any] = {
        "status": fields["status"], "code": fields["failure_code"], "message": fields["failure_message"],
        "attempt_count": fields["attempt_count"], "now": fields["updated"], "gateway_id": fields.get("gateway_id"),
        "final": "next_settle_at" in fields, "id": payment_id,
    }
    for i, a in enumerate(attempts, start=1):
        params.update({f"n{i}": i, f"t{i}": a.started_at, f"d{i}": a.duration_ms, f"o{i}": a.outcome,
                       f"h{i}": a.http_status, f"r{i}": a.request_id[:255], f"e{i}": a.error[:255]})
    rows = _ATTEMPTS.format(rows=", ".join(_attempt_row(i) for i in range(1, len(attempts) + 1))) if attempts else ""
    if release is not None:
        params.update(_release_params(*release))
    row = _execute(_APPLY.format(attempts=rows, release=_APPLY_RELEASE if release is not None else ""), params,
                   answer=True)
    return bool(row and row[0])


def _release_params(record_id: int, status: int | None, body: dict[str, Any] | None) -> dict[str, Any]:
    return {"record_id": record_id, "response_status": status,
            "response_body": None if body is None else json.dumps(body)}


def idempotency_release(*, record_id: int, status: int | None, body: dict[str, Any] | None) -> None:
    _execute(_RELEASE, _release_params(record_id, status, body))
