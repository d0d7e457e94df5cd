"""Reads for the console: the index summary, System Health, the history charts, an alert's
context and the drills. Every page costs a fixed number of queries, whatever the table sizes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone

from config.redis import get_redis
from health.console.cards import POOL_COMPONENTS
from health.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    AlertNotification,
    ComponentSnapshot,
    DrillKind,
    DrillRun,
    HealthCheckRun,
    Severity,
)
from health.selectors import STALE_INTERVALS, Staleness, health_latest_run, health_staleness

HISTORY_RANGES: dict[str, tuple[timedelta, int]] = {
    # range -> (span, bucket seconds): about 120-290 points per line
    "hour": (timedelta(hours=1), 30),
    "day": (timedelta(days=1), 300),
}


SNAPSHOTS_AROUND = 6  # snapshots shown either side of an alert's first and last sighting


@dataclass(frozen=True)
class Overview:
    """What the admin index shows above the app list."""

    status: str  # ok, degraded, down, stale, unknown
    last_run: HealthCheckRun | None
    staleness: Staleness
    counts: dict[str, int]  # active alerts per severity, worst first


def console_overview(*, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    run = health_latest_run()
    staleness = health_staleness(now=now, last_run=run)
    status = "unknown" if run is None else "stale" if staleness.stale else run.status
    rows = (Alert.objects.filter(status__in=ACTIVE_ALERT_STATUSES).order_by()
            .values("severity").annotate(n=Count("id")))
    found = {row["severity"]: row["n"] for row in rows}
    return Overview(status=status, last_run=run, staleness=staleness,
                    counts={severity: found.get(severity, 0) for severity in Severity.values})


def component_names() -> list[str]:
    """Every component a health run measures, plus the health checks themselves."""
    from health.checks import default_checks

    return [check.name for check in default_checks()] + ["health"]


@dataclass
class Fleet:
    processes: list[dict[str, Any]]
    available: bool
    error: str = ""
    db_max_total: int = 0
    server: dict[str, Any] | None = None
    capacity: int | None = None
    behind_pgbouncer: bool = False  # DB_PGBOUNCER: the pools are PgBouncer's clients, not the server's


def fleet_overview() -> Fleet:
    """Each live process's pools (from Redis) and their sum against PostgreSQL's max_connections."""
    from redis.exceptions import RedisError

    from health.selectors import fleet_pool_stats, server_connection_stats

    try:
        docs = fleet_pool_stats()
    except RedisError as exc:
        return Fleet(processes=[], available=False, error=f"Redis unavailable ({exc.__class__.__name__})")
    now = time.time()
    processes = []
    for doc in docs:
        db = doc.get("db") or {}
        processes.append({
            "host": doc.get("host"), "pid": doc.get("pid"), "role": doc.get("role"),
            "age_s": round(max(0.0, now - float(doc.get("at") or now)), 1),
            "db": db or None, "db_pct": round(100.0 * db["in_use"] / db["max"], 1) if db.get("max") else None,
            "db_answers_max": (doc.get("db_answers") or {}).get("max", 0),
            "http": [{**pool, "pct": round(100.0 * pool["in_use"] / pool["max"], 1) if pool.get("max") else None}
                     for pool in doc.get("http") or []],
            "web": doc.get("web"),  # a gunicorn worker's threads (config/queueing.py)
        })
    fleet = Fleet(processes=processes, available=True,
                  db_max_total=sum((p["db"] or {}).get("max", 0) + p["db_answers_max"] for p in processes),
                  behind_pgbouncer=settings.DB_PGBOUNCER)
    try:
        fleet.server = server_connection_stats()
        fleet.capacity = fleet.server["max_connections"] - settings.DB_CONNECTION_RESERVE
    except Exception:  # noqa: BLE001 - the page shows what it has; the database card says the rest
        fleet.server = None
    return fleet


def history_series(*, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """Each pool's utilisation and the gateway's latency over the range, averaged per bucket in SQL
    (one indexed range scan, never one row per snapshot into Python)."""
    from health.console.charts import Series

    span, bucket = HISTORY_RANGES.get(range_name, HISTORY_RANGES["hour"])
    end = now or timezone.now()
    start = end - span
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT component, date_bin(%s::interval, checked_at, %s) AS bucket,
                   max(utilisation_pct), avg(latency_ms)
            FROM health_componentsnapshot
            WHERE checked_at >= %s AND checked_at < %s AND component = ANY(%s)
            GROUP BY 1, 2 ORDER BY 2
            """,
            [f"{bucket} seconds", start, start, end, list(POOL_COMPONENTS) + ["gateway"]],
        )
        rows = cursor.fetchall()
    buckets = [start + timedelta(seconds=bucket * i) for i in range(int(span.total_seconds() // bucket) + 1)]
    utilisation: dict[str, dict[datetime, float | None]] = {name: {} for name in POOL_COMPONENTS}
    latency: dict[datetime, float | None] = {}
    for component, at, util, lat in rows:
        if component == "gateway":
            latency[at] = lat
        elif component in utilisation:
            utilisation[component][at] = util
    pools = [Series(name, [(at, utilisation[name].get(at)) for at in buckets])
             for name in POOL_COMPONENTS if any(v is not None for v in utilisation[name].values())]
    return {"start": start, "end": end, "bucket": bucket, "pools": pools,
            "latency": [Series("gateway probe", [(at, latency.get(at)) for at in buckets])]}


def recent_alerts(*, limit: int = 10) -> list[Alert]:
    """Active alerts, worst first, then the most recently seen."""
    return list(Alert.objects.filter(status__in=ACTIVE_ALERT_STATUSES).select_related("acknowledged_by")
                .order_by("-severity_rank", "-last_seen")[:limit])


def unknown_payments() -> list[dict[str, Any]]:
    from payments.selectors import payment_unknown_summary, with_display

    return with_display(payment_unknown_summary())


def stale_limit_seconds() -> int:
    return STALE_INTERVALS * settings.HEALTH_CHECK_INTERVAL


# --- One alert -------------------------------------------------------------------------------
def alert_history(*, alert: Alert) -> list[dict[str, Any]]:
    """What happened to the alert, oldest first: first seen, notifications, what people did, last seen."""
    events: list[dict[str, Any]] = [{"at": alert.first_seen, "what": "first seen", "who": "", "detail": ""}]
    for note in AlertNotification.objects.filter(alert=alert).order_by("created_at")[:50]:
        sent = ", ".join(name for name, at in (("e-mail", note.email_sent_at), ("webhook", note.webhook_sent_at))
                         if at) or "not sent"
        events.append({"at": note.created_at, "what": f"{note.event} ({note.severity})", "who": "",
                       "detail": f"notification: {sent}" + (f"; {note.last_error}" if note.last_error else "")})
    content_type = ContentType.objects.get_for_model(Alert)
    for entry in (LogEntry.objects.filter(content_type=content_type, object_id=str(alert.pk))
                  .select_related("user").order_by("action_time")[:50]):
        events.append({"at": entry.action_time, "what": "changed in the console",
                       "who": str(entry.user) if entry.user else "", "detail": entry.get_change_message()})
    if alert.resolved_at and alert.resolved_by is None:
        events.append({"at": alert.resolved_at, "what": "resolved automatically", "who": "",
                       "detail": alert.resolution_note})
    if alert.reopened:
        events.append({"at": alert.last_seen, "what": f"reopened {alert.reopened} time(s)", "who": "", "detail": ""})
    events.append({"at": alert.last_seen, "what": f"last seen ({alert.occurrences} occurrences)", "who": "",
                   "detail": alert.message})
    return sorted(events, key=lambda e: e["at"])


def snapshots_around(*, alert: Alert) -> dict[str, list[ComponentSnapshot]]:
    """The component's snapshots just before and after the alert's first and last sighting
    (four index range scans of at most SNAPSHOTS_AROUND rows each)."""
    base = ComponentSnapshot.objects.filter(component=alert.component).defer("figures")

    def around(at: datetime) -> list[ComponentSnapshot]:
        before = list(base.filter(checked_at__lt=at).order_by("-checked_at")[:SNAPSHOTS_AROUND])
        after = list(base.filter(checked_at__gte=at).order_by("checked_at")[:SNAPSHOTS_AROUND])
        return list(reversed(before)) + after

    first = around(alert.first_seen)
    shown = {s.pk for s in first}
    last = [s for s in around(alert.last_seen) if s.pk not in shown]
    return {"first": first, "last": last}


# --- Drills ----------------------------------------------------------------------------------
PROGRESS_KEY = "payops:drill:{}:progress"


def drill_progress(run_id: int) -> dict[str, Any] | None:
    """How far a running drill got, as it last reported to Redis."""
    try:
        raw = get_redis().get(PROGRESS_KEY.format(run_id))
    except Exception:  # noqa: BLE001 - no progress shown is better than a broken page
        return None
    return json.loads(raw) if raw else None


def drill_runs_recent(*, limit: int = 10) -> QuerySet[DrillRun]:
    return DrillRun.objects.select_related("started_by").order_by("-created_at")[:limit]


def drill_active(*, kind: str) -> DrillRun | None:
    return DrillRun.objects.filter(kind=kind, status__in=["queued", "running"]).first()


def drill_kinds() -> list[tuple[str, str]]:
    return list(DrillKind.choices)
