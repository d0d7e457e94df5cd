"""The drills themselves: each takes its (validated, bounded) parameters and a progress
callback, does real work against the real pools and peers, and returns what it saw."""

from __future__ import annotations

import logging
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from django.conf import settings
from django.db import connection, connections

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

# Hard bounds, whatever a form says: a drill tests the service, it must never become the outage.
MAX_CONCURRENCY = 50
MAX_HOLD_MS = 5000
MAX_POOL = 50
MAX_ROUNDS = 5
SANDBOX_TIMEOUT = 3.0  # s, a call to the sandbox's control API


class DrillRefused(Exception):
    """The drill must not run here (not a sandbox, production mode); nothing was done."""


# --- Database pool stress --------------------------------------------------------------------
def db_pool_stress(*, concurrency: int, pool_max: int, hold_ms: int, progress: Progress) -> dict[str, Any]:
    """`concurrency` queries at once, each holding a connection for `hold_ms`, against a pool of
    `pool_max`: the extra ones queue for a connection; none should fail. With `pool_max` equal
    to this process's own pool size the drill uses that very pool (what the health checks see);
    another size gets a pool of its own with the same connection settings."""
    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    pool_max = max(1, min(pool_max, MAX_POOL))
    hold = max(0.0, min(hold_ms, MAX_HOLD_MS)) / 1000
    own_pool = connection.pool  # type: ignore[attr-defined]  # Django 5.1's pool; not in django-stubs
    use_own = own_pool is not None and pool_max == own_pool.max_size
    before = own_pool.get_stats() if use_own else {}
    dedicated = None if use_own else _dedicated_pool(pool_max)
    # This thread's connection goes back first, so the drill competes for the whole pool.
    connection.close()
    barrier = threading.Barrier(concurrency)
    started = time.perf_counter()
    done = [0]
    lock = threading.Lock()

    def one(index: int) -> dict[str, Any]:
        barrier.wait(timeout=10)
        asked = time.perf_counter()
        got = finished = None
        error = ""
        try:
            if dedicated is not None:
                with dedicated.connection() as conn:
                    got = time.perf_counter()
                    conn.execute("SELECT pg_sleep(%s)", [hold])
                    finished = time.perf_counter()
            else:
                connection.ensure_connection()  # borrows from the process's pool, waiting if it is empty
                got = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_sleep(%s)", [hold])
                finished = time.perf_counter()
        except Exception as exc:  # noqa: BLE001 - a failure is what the drill reports
            error = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        finally:
            connections.close_all()
        end = finished or time.perf_counter()
        with lock:
            done[0] += 1
            count = done[0]
        progress(count, concurrency, f"{count} of {concurrency} queries finished")
        return {"index": index, "asked_s": round(asked - started, 4), "got_s": round((got or end) - started, 4),
                "end_s": round(end - started, 4), "wait_ms": round(((got or end) - asked) * 1000, 1),
                "query_ms": round((end - (got or end)) * 1000, 1), "error": error}

    progress(0, concurrency, f"starting {concurrency} queries against a pool of {pool_max}")
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drill-db") as executor:
            queries = list(executor.map(one, range(concurrency)))
    finally:
        if dedicated is not None:
            dedicated.close()
    elapsed = time.perf_counter() - started
    after = own_pool.get_stats() if use_own else {}
    waits = [q["wait_ms"] for q in queries]
    # Queued = waited for another query's hold to end. A query that found no idle connection
    # also waits while the pool opens one (tens of ms, more on a busy host): half a hold
    # tells the two apart.
    queued = [q for q in queries if q["wait_ms"] > max(20.0, hold * 1000 * 0.5)]
    return {
        "pool": "this worker's own pool" if use_own else "a dedicated pool for the drill",
        "concurrency": concurrency, "pool_max": pool_max, "hold_ms": round(hold * 1000),
        "connection_timeout_s": settings.DB_CONNECTION_TIMEOUT,
        "elapsed_ms": round(elapsed * 1000, 1),
        "queued": len(queued), "failed": sum(1 for q in queries if q["error"]),
        "wait_ms": {"p50": round(statistics.median(waits), 1), "max": round(max(waits), 1),
                    "total": round(sum(waits), 1)},
        "pool_stats": {key: after.get(key, 0) - before.get(key, 0)
                       for key in ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors",
                                   "connections_num")} if use_own else None,
        "queries": queries,
    }


def _dedicated_pool(size: int) -> Any:
    from psycopg_pool import ConnectionPool

    params = connection.get_connection_params()
    params["autocommit"] = True
    pool = ConnectionPool(kwargs=params, min_size=0, max_size=size, timeout=settings.DB_CONNECTION_TIMEOUT,
                          name="payops-drill", open=False)
    pool.open(wait=False)
    return pool


# --- HTTP pool --------------------------------------------------------------------------------
def http_pool(*, concurrency: int, rounds: int, progress: Progress) -> dict[str, Any]:
    """`rounds` bursts of `concurrency` simultaneous gateway probes through the payment Session:
    the pool holds PAYMENT_POOL_MAXSIZE connections, so the rest wait, and later rounds reuse
    the connections the first one opened."""
    from payments.gateway import get_gateway
    from payments.gateway.errors import GatewayError

    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    rounds = max(1, min(rounds, MAX_ROUNDS))
    gateway = get_gateway()
    before = _payment_pool_figures()
    proxy_before = _sandbox_stats(gateway.config.base_url)
    total = concurrency * rounds
    done = [0]
    lock = threading.Lock()
    requests_seen: list[dict[str, Any]] = []
    started = time.perf_counter()

    def one(index: int, round_no: int, barrier: threading.Barrier) -> dict[str, Any]:
        barrier.wait(timeout=10)
        asked = time.perf_counter()
        error = ""
        try:
            gateway.probe(timeout=3.0)
        except GatewayError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:200]
        end = time.perf_counter()
        with lock:
            done[0] += 1
            count = done[0]
        progress(count, total, f"round {round_no}: {count} of {total} requests answered")
        return {"round": round_no, "index": index, "asked_s": round(asked - started, 4),
                "end_s": round(end - started, 4), "latency_ms": round((end - asked) * 1000, 1), "error": error}

    progress(0, total, f"{rounds} rounds of {concurrency} concurrent requests")
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drill-http") as executor:
        for round_no in range(1, rounds + 1):
            barrier = threading.Barrier(concurrency)
            requests_seen.extend(executor.map(lambda i, r=round_no, b=barrier: one(i, r, b), range(concurrency)))
    elapsed = time.perf_counter() - started
    after = _payment_pool_figures()
    delta = {key: round(after.get(key, 0) - before.get(key, 0), 1)
             for key in ("acquisitions", "wait_ms_total", "pool_full", "requests", "errors", "connections_opened")}
    proxy_after = _sandbox_stats(gateway.config.base_url)
    latencies = [r["latency_ms"] for r in requests_seen]
    return {
        "gateway": gateway.config.base_url, "concurrency": concurrency, "rounds": rounds,
        "pool_maxsize": settings.PAYMENT_POOL_MAXSIZE, "elapsed_ms": round(elapsed * 1000, 1),
        "failed": sum(1 for r in requests_seen if r["error"]),
        "latency_ms": {"p50": round(statistics.median(latencies), 1), "max": round(max(latencies), 1)},
        "pool": delta,
        "longest_wait_ms": after.get("max_wait_ms"),
        "connections_reused": int(delta["requests"] - delta["connections_opened"]),
        "proxy_connections_opened": (proxy_after["connections_opened"] - proxy_before["connections_opened"]
                                     if proxy_before and proxy_after else None),
        "requests": requests_seen,
    }


def _payment_pool_figures() -> dict[str, float]:
    from config.http.pools import http_pool_stats

    totals: dict[str, float] = {}
    for pool in http_pool_stats():
        if pool["client"] != "payment":
            continue
        for key, value in pool.items():
            if isinstance(value, (int, float)):
                totals[key] = max(totals.get(key, 0), value) if key == "max_wait_ms" else totals.get(key, 0) + value
    return totals


# --- Payment timeout --------------------------------------------------------------------------
def gateway_is_sandbox(base_url: str | None = None) -> bool:
    """True when the payment gateway is this project's sandbox proxy (its control API answers)."""
    url = (base_url or settings.PAYMENT_GATEWAY_URL).rstrip("/") + "/_sandbox/health"
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(url, timeout=SANDBOX_TIMEOUT)
        return response.status_code == 200 and response.json().get("ok") is True
    except (requests.RequestException, ValueError):
        return False


def payment_timeout_refusal() -> str | None:
    """Why the payment timeout drill may not run here, or None. It needs the sandbox's fault
    injection, so it is refused against any other gateway (and so always in production,
    unless production points at a sandbox)."""
    if gateway_is_sandbox():
        return None
    mode = "production mode" if not settings.DEBUG else "development mode"
    return (f"refused in {mode}: the payment gateway ({settings.PAYMENT_GATEWAY_URL}) is not the sandbox, "
            "so no slow answer can be injected and a real charge would be made")


def payment_timeout(*, timeouts: int, amount: int, progress: Progress) -> dict[str, Any]:
    """A real payment through the service while the sandbox holds the gateway's answers longer
    than PAYMENT_TIMEOUT for its first `timeouts` tries: the retries keep the idempotency key,
    the outcome is recorded `unknown` when every try timed out, and settlement then asks the
    gateway and finds the charge (no second one)."""
    from payments.gateway import get_gateway
    from payments.models import ApiClient, Payment, PaymentAttempt
    from payments.services.api_keys import api_key_create
    from payments.services.idempotency import idempotency_claim, idempotency_release
    from payments.services.settlement import payment_settle
    from payments.services.submit import payment_create, payment_submit

    refusal = payment_timeout_refusal()
    if refusal:
        raise DrillRefused(refusal)
    gateway = get_gateway()
    base = gateway.config.base_url.rstrip("/")
    attempts = settings.PAYMENT_RETRY_ATTEMPTS
    timeouts = max(1, min(timeouts, attempts))
    delay_ms = int(settings.PAYMENT_TIMEOUT * 1000) + 1000
    progress(0, 4, "injecting the slow answers at the sandbox")
    client = ApiClient.objects.filter(name="console-drills").first()
    if client is None:
        client, _ = api_key_create(name="console-drills")  # the key is never needed
    with requests.Session() as control:
        control.trust_env = False
        rule = control.post(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT, json={
            "kind": "latency", "count": timeouts, "method": "POST", "path_prefix": "/v1/payment_intents",
            "delay_ms": delay_ms,
        })
        rule.raise_for_status()
        rule_id = rule.json().get("id")
        try:
            progress(1, 4, f"paying: every try waits up to {settings.PAYMENT_TIMEOUT:.1f} s")
            key = f"drill-{uuid.uuid4().hex}"
            record = idempotency_claim(client=client, key=key, endpoint="payments",
                                                        request_hash=key).record
            payment = payment_create(
                client=client, record=record, amount=amount, currency="usd", payment_method="pm_card_visa",
                reference=f"console drill {key[-8:]}", metadata={"drill": "payment_timeout"},
            )
            idempotency_release(record=record)
            clock = time.perf_counter()
            submitted = payment_submit(payment_id=payment.id)
            submit_ms = round((time.perf_counter() - clock) * 1000, 1)
        finally:
            left = control.get(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT).json().get("faults", [])
            if any(f.get("id") == rule_id for f in left):
                control.delete(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT)
    progress(2, 4, f"outcome recorded: {submitted.status}")
    after_submit = {"status": submitted.status, "failure_code": submitted.failure_code,
                    "attempt_count": submitted.attempt_count}
    settled = None
    if submitted.status in ("unknown", "processing"):
        progress(3, 4, "settling: asking the gateway what happened")
        settled = payment_settle(payment_id=payment.id)
    final = Payment.objects.get(pk=payment.id)
    progress(4, 4, f"final status: {final.status}")
    return {
        "payment_id": final.id, "amount": amount, "currency": "usd",
        "config": {"timeout_s": settings.PAYMENT_TIMEOUT, "connect_timeout_s": settings.PAYMENT_CONNECT_TIMEOUT,
                   "retry_attempts": attempts, "retry_delay_s": settings.PAYMENT_RETRY_DELAY,
                   "deadline_s": settings.PAYMENT_DEADLINE},
        "fault": {"kind": "latency", "tries_held": timeouts, "delay_ms": delay_ms},
        "submit_ms": submit_ms, "after_submit": after_submit,
        "settled": settled is not None, "final_status": final.status, "gateway_id": final.gateway_id,
        "attempts": [
            {"number": a.number, "operation": a.operation, "outcome": a.outcome, "duration_ms": round(a.duration_ms, 1),
             "http_status": a.http_status, "error": a.error}
            for a in PaymentAttempt.objects.filter(payment_id=final.id).order_by("number")
        ],
    }


def _sandbox_stats(base_url: str) -> dict[str, Any] | None:
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(base_url.rstrip("/") + "/_sandbox/stats", timeout=SANDBOX_TIMEOUT)
        return response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


# --- Log test ------------------------------------------------------------------------------------
def log_test(*, run_id: int, progress: Progress) -> dict[str, Any]:
    """One categorised record handed to every handler configured for it; then CloudWatch's
    handler is flushed and its counters say whether CloudWatch accepted the record."""
    from config.logs import cloudwatch

    drill_logger = logging.getLogger("health.console.drills")
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = drill_logger
    while current is not None:
        handlers.extend(h for h in current.handlers if h not in handlers)
        current = current.parent if current.propagate else None
    active = getattr(cloudwatch, "_active", None)
    if active is not None and active not in handlers:
        handlers.append(active)  # CloudWatch is configured for this process even if not on this path
    before = cloudwatch.handler_stats()
    record = drill_logger.makeRecord(
        drill_logger.name, logging.WARNING, __file__, 0, "console log drill %s: a test record, no action needed",
        (run_id,), None, extra={"category": "drill_log_test", "drill_id": run_id},
    )
    results = []
    for index, handler in enumerate(handlers, start=1):
        progress(index - 1, len(handlers) + 1, f"sending to {handler.__class__.__name__}")
        entry: dict[str, Any] = {"handler": handler.__class__.__name__, "name": handler.get_name() or "",
                 "level": logging.getLevelName(handler.level), "target": _handler_target(handler)}
        if record.levelno < handler.level:
            entry.update(delivered=False, error="below the handler's level")
        else:
            try:
                handler.handle(record)
                handler.flush() if handler is not active else None
                entry.update(delivered=True, error="")
            except Exception as exc:  # noqa: BLE001
                entry.update(delivered=False, error=exc.__class__.__name__)
        results.append(entry)
    progress(len(handlers), len(handlers) + 1, "waiting for CloudWatch")
    if before is None:
        cloud: dict[str, Any] = {"enabled": False, "accepted": None,
                                 "detail": "CloudWatch is off (CLOUDWATCH_LOG_GROUP is not set)"}
    else:
        flushed = cloudwatch.cloudwatch_flush(timeout=settings.CLOUDWATCH_TIMEOUT)
        after = cloudwatch.handler_stats() or {}
        sent = (after.get("sent") or 0) - (before.get("sent") or 0)
        errors = (after.get("errors") or 0) - (before.get("errors") or 0)
        failed = (after.get("failed") or 0) - (before.get("failed") or 0)
        accepted = flushed and sent >= 1 and failed == 0
        cloud = {"enabled": True, "accepted": accepted, "flushed": flushed, "sent": sent, "errors": errors,
                 "failed": failed, "state": after.get("state"), "last_error": after.get("last_error"),
                 "log_group": settings.CLOUDWATCH_LOG_GROUP,
                 "detail": "CloudWatch accepted the batch" if accepted else
                 f"not confirmed: {sent} sent, {errors} errors, {failed} failed"
                 + (f" (last error {after.get('last_error')})" if after.get("last_error") else "")}
    progress(len(handlers) + 1, len(handlers) + 1, "done")
    return {"category": "drill_log_test", "logger": drill_logger.name, "handlers": results, "cloudwatch": cloud}


def _handler_target(handler: logging.Handler) -> str:
    if hasattr(handler, "baseFilename"):
        return str(handler.baseFilename)
    stream = getattr(handler, "stream", None)
    if stream is not None:
        return getattr(stream, "name", stream.__class__.__name__)
    group = getattr(handler, "log_group_name", None)
    return f"CloudWatch {group}" if group else ""
