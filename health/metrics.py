"""What /metrics says: every process's pools and payment figures as published to Redis, and
the latest health run's component states, breaker and open alerts.

A scrape costs one Redis round trip and a few small indexed queries, never a query per
payment: the figures are the totals each process already publishes (health.fleet), so
Prometheus takes rates and percentiles from the counters and histograms itself. Series
carry the process (host:pid) and its role; a restarted process is a new series.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from health import selectors
from health.checks.base import STATUS_RANK
from health.exposition import Family, render

PREFIX = "payops"


def metrics_text() -> str:
    """The whole exposition."""
    docs, shared = _fleet_docs()
    families = [*_pool_families(docs), *_payment_families(docs), *_health_families(shared=shared, docs=docs)]
    return render(families)


def _fleet_docs() -> tuple[list[dict[str, Any]], bool]:
    """Every process's published figures, this one's fresh in place of its last publication;
    only this one's when Redis is away."""
    from health.services.publishing import pool_stats_collect

    own = pool_stats_collect()
    try:
        others = [doc for doc in selectors.fleet_pool_stats() if doc.get("process") != own["process"]]
    except RedisError:
        return [own], False
    return [*others, own], True


def _family(name: str, type_: str, help_: str) -> Family:
    return Family(f"{PREFIX}_{name}", type_, help_)


# --- Pools ----------------------------------------------------------------------------------
def _pool_families(docs: list[dict[str, Any]]) -> list[Family]:
    in_use = _family("pool_in_use", "gauge", "Connections or threads of the pool serving a request now.")
    idle = _family("pool_idle", "gauge", "Connections or threads of the pool open and free.")
    maximum = _family("pool_max", "gauge", "Largest size the pool may reach.")
    waiting = _family("pool_waiting", "gauge", "Requests waiting for a connection or thread of the pool now.")
    acquired = _family("pool_acquisitions", "counter", "Connections or threads handed out by the pool.")
    waited = _family("pool_wait_seconds", "counter", "Time requests spent waiting for the pool.")
    timeouts = _family("pool_timeouts", "counter",
                       "Requests that found no free connection within the pool's wait limit.")
    errors = _family("pool_errors", "counter", "Connections that failed to open or broke while in use.")
    refusals = _family("database_refusals", "counter",
                       "Requests answered 503 because the database pool was exhausted or the database away.")
    for doc in docs:
        who = {"process": doc["process"], "role": doc.get("role", "")}
        for pool_name, db in (("database", doc.get("db")), ("database_answers", doc.get("db_answers"))):
            if not db:
                continue
            labels = {**who, "pool": pool_name, "client": "", "host": ""}
            _gauges(labels, db["in_use"], db["idle"], db["max"], db["waiting"], in_use, idle, maximum, waiting)
            acquired.add(db.get("requests_num", 0), **labels)
            waited.add(round(db.get("requests_wait_ms", 0) / 1000.0, 6), **labels)
            timeouts.add(db.get("requests_errors", 0), **labels)
            errors.add(db.get("connections_errors", 0) + db.get("connections_lost", 0), **labels)
        for http in doc.get("http") or []:
            labels = {**who, "pool": "http", "client": http["client"], "host": http["host"]}
            _gauges(labels, http["in_use"], http["idle"], http["max"], http["waiting"], in_use, idle, maximum,
                    waiting)
            acquired.add(http.get("acquisitions", 0), **labels)
            waited.add(round(http.get("wait_ms_total", 0) / 1000.0, 6), **labels)
            timeouts.add(http.get("pool_full", 0), **labels)
            errors.add(http.get("errors", 0), **labels)
        web = doc.get("web")
        if web:
            labels = {**who, "pool": "web_threads", "client": "", "host": ""}
            _gauges(labels, web["busy"], max(0, web["threads"] - web["busy"]), web["threads"], web["waiting"],
                    in_use, idle, maximum, waiting)
            acquired.add(web.get("requests", 0), **labels)
            waited.add(round(web.get("wait_ms_total", 0) / 1000.0, 6), **labels)
        for reason, count in (doc.get("db_failures") or {}).get("total", {}).items():
            refusals.add(count, **who, reason=reason)
    return [in_use, idle, maximum, waiting, acquired, waited, timeouts, errors, refusals]


def _gauges(labels: dict[str, str], in_use_value: float, idle_value: float, max_value: float, waiting_value: float,
            in_use: Family, idle: Family, maximum: Family, waiting: Family) -> None:
    in_use.add(in_use_value, **labels)
    idle.add(idle_value, **labels)
    maximum.add(max_value, **labels)
    waiting.add(waiting_value, **labels)


# --- Payments -------------------------------------------------------------------------------
def _payment_families(docs: list[dict[str, Any]]) -> list[Family]:
    payments = _family("payments", "counter",
                       "Payments that reached an outcome for their client (shed: answered 503 unsent).")
    declines = _family("payment_declines", "counter", "Failed payments by the gateway's decline code.")
    refunds = _family("refunds", "counter", "Refunds that reached an outcome.")
    calls = _family("gateway_calls", "counter", "Logical gateway calls, each with its retries.")
    attempts = _family("gateway_attempts", "counter", "Requests sent to the gateway, retries included.")
    retries = _family("gateway_retries", "counter", "Tries of a gateway call after its first.")
    timeouts = _family("gateway_timeouts", "counter", "Gateway requests that got no answer within the read timeout.")
    connect_errors = _family("gateway_connect_errors", "counter", "Gateway requests whose connection failed.")
    responses = _family("gateway_responses", "counter", "Gateway answers by HTTP status code.")
    latency = _family("gateway_request_duration_seconds", "histogram",
                      "Time of each gateway request until its answer or timeout (buckets: fractions of the "
                      "read timeout).")
    for doc in docs:
        figures = doc.get("payments")
        if not figures:
            continue
        who = {"process": doc["process"], "role": doc.get("role", "")}
        for outcome, count in figures.get("payments", {}).items():
            payments.add(count, **who, outcome=outcome)
        for code, count in figures.get("declines", {}).items():
            declines.add(count, **who, code=code)
        for outcome, count in figures.get("refunds", {}).items():
            refunds.add(count, **who, outcome=outcome)
        for operation, op in figures.get("gateway", {}).items():
            labels = {**who, "operation": operation}
            calls.add(op["calls"], **labels)
            attempts.add(op["attempts"], **labels)
            retries.add(op["retries"], **labels)
            timeouts.add(op["timeouts"], **labels)
            connect_errors.add(op["connect_errors"], **labels)
            for code, count in op.get("answers", {}).items():
                responses.add(count, **labels, code=code)
            histogram = op.get("latency")
            if histogram:
                latency.add_histogram(bounds=figures["buckets"], counts=histogram["counts"],
                                      total=histogram["sum"], **labels)
    return [payments, declines, refunds, calls, attempts, retries, timeouts, connect_errors, responses, latency]


# --- The latest health run ------------------------------------------------------------------
def _health_families(*, shared: bool, docs: list[dict[str, Any]]) -> list[Family]:
    processes = _family("fleet_processes", "gauge", "Web and worker processes whose figures are known.")
    processes.add(len(docs))
    shared_view = _family("fleet_shared", "gauge", "1 when Redis answered and every process is seen, 0 when "
                                                   "only this process's figures are known.")
    shared_view.add(1 if shared else 0)
    accounts = _family("gateway_accounts", "gauge", "Gateway address and key pairs the known processes pay "
                                                    "through; above 1 is the config_drift alert.")
    accounts.add(len({(doc.get("gateway") or {}).get("fingerprint") for doc in docs} - {None}))
    run = selectors.health_latest_run()
    staleness = selectors.health_staleness(last_run=run)
    last_run = _family("health_last_run_timestamp_seconds", "gauge", "When the latest health run started.")
    stale = _family("health_stale", "gauge", "1 when health runs stopped (the dead-man's switch).")
    stale.add(1 if staleness.stale else 0)
    component = _family("health_component_status", "gauge", "Latest state of each component: 0 ok, 1 degraded, "
                                                            "2 down.")
    breaker = _family("gateway_breaker_state", "gauge", "1 for the gateway circuit breaker's state at the "
                                                        "latest health run, 0 for the others.")
    latency = _family("payment_latency_seconds", "gauge", "Gateway latency of payment creations over the "
                                                          "latest health interval, over the fleet, by percentile.")
    success = _family("payment_success_ratio", "gauge", "Payments that succeeded over the latest health "
                                                        "interval, of those that reached a final outcome.")
    if run is not None:
        last_run.add(run.started_at.timestamp())
        for snapshot in run.snapshots.all():
            component.add(STATUS_RANK.get(snapshot.status, 2), component=snapshot.component)
            if snapshot.component == "gateway" and snapshot.figures.get("breaker"):
                state = snapshot.figures["breaker"].get("state")
                for name in ("closed", "open", "half_open"):
                    breaker.add(1 if state == name else 0, state=name)
            traffic = snapshot.figures.get("traffic") if snapshot.component == "payments" else None
            if traffic:
                for name in ("p50", "p95", "p99"):
                    value = traffic["latency"].get(f"{name}_ms")
                    # Not `quantile`: that label belongs to summaries, whose quantiles are per process.
                    latency.add(value / 1000.0 if value is not None else None, percentile=name)
                rate = traffic.get("success_rate_pct")
                success.add(rate / 100.0 if rate is not None else None)
    alerts = _family("alerts_open", "gauge", "Open or acknowledged alerts by severity, silenced ones left out.")
    for severity, items in selectors.alerts_open_by_severity().items():
        alerts.add(len(items), severity=severity)
    return [processes, shared_view, accounts, last_run, stale, component, breaker, latency, success, alerts]

