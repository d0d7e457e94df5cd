"""Reads of the health app: the latest run, staleness, open alerts, the fleet's pools, the server's view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from health import fleet
from health.models import ACTIVE_ALERT_STATUSES, Alert, ComponentSnapshot, HealthCheckRun, Severity, Silence

TOTALS_KEY = "traffic_totals"  # in the payments snapshot: every process's totals, the next run's baseline
STALE_INTERVALS = 3  # no run for this many check intervals: the dead-man's switch trips


@dataclass(frozen=True)
class Staleness:
    stale: bool
    last_run_at: datetime | None
    age_seconds: float | None
    limit_seconds: float


def health_latest_run() -> HealthCheckRun | None:
    return HealthCheckRun.objects.order_by("-tick").first()


def health_staleness(*, now: datetime | None = None, last_run: HealthCheckRun | None = None) -> Staleness:
    """Whether the health checks stopped: no run for three intervals (or none ever)."""
    now = now or timezone.now()
    if last_run is None:
        last_run = health_latest_run()
    limit = float(STALE_INTERVALS * settings.HEALTH_CHECK_INTERVAL)
    if last_run is None:
        return Staleness(stale=True, last_run_at=None, age_seconds=None, limit_seconds=limit)
    age = max(0.0, (now - last_run.started_at).total_seconds())
    return Staleness(stale=age > limit, last_run_at=last_run.started_at, age_seconds=round(age, 1),
                     limit_seconds=limit)


def silences_active(*, now: datetime | None = None) -> list[Silence]:
    now = now or timezone.now()
    return list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))


def alerts_open_by_severity(*, now: datetime | None = None, include_silenced: bool = False) -> dict[str, list[Alert]]:
    """Active (open or acknowledged) alerts, worst first, grouped by severity; silenced ones
    are left out unless asked for."""
    silences = [] if include_silenced else silences_active(now=now)
    grouped: dict[str, list[Alert]] = {severity: [] for severity in Severity.values}
    for alert in Alert.objects.filter(status__in=ACTIVE_ALERT_STATUSES).order_by("-severity_rank", "-last_seen"):
        if any(s.matches(component=alert.component, condition=alert.condition) for s in silences):
            continue
        grouped[alert.severity].append(alert)
    return grouped


def snapshots_between(*, component: str, start: datetime, end: datetime) -> QuerySet[ComponentSnapshot]:
    """One component's snapshots in [start, end), oldest first (served by an index)."""
    return ComponentSnapshot.objects.filter(component=component, checked_at__gte=start,
                                            checked_at__lt=end).order_by("checked_at")


def payment_figures_baseline() -> dict[str, Any] | None:
    """The fleet's payment totals the latest run stored: what the next run subtracts. One
    indexed read from the newest payments snapshot backwards."""
    figures = (ComponentSnapshot.objects.filter(component="payments", figures__has_key=TOTALS_KEY)
               .order_by("-checked_at").values_list("figures", flat=True).first())
    return figures[TOTALS_KEY] if figures else None


def payment_figures_recent(*, runs: int) -> dict[str, Any]:
    """The payments of the latest `runs` stored intervals summed: final outcomes, successes and
    declines per code; the baseline today's interval is compared with. Two indexed reads of at
    most `runs` rows, aggregated in SQL."""
    scope = """
        SELECT figures FROM health_componentsnapshot
        WHERE component = 'payments' AND figures ? 'traffic' ORDER BY checked_at DESC LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT coalesce(sum((figures->'traffic'->>'total')::int), 0),
                   coalesce(sum((figures->'traffic'->'payments'->>'succeeded')::int), 0)
            FROM ({scope}) AS recent
            """,
            [runs],
        )
        total, succeeded = cursor.fetchone()
        cursor.execute(
            f"""
            SELECT code, sum(n::int) FROM ({scope}) AS recent,
                   jsonb_each_text(recent.figures->'traffic'->'declines') AS d(code, n)
            GROUP BY code
            """,
            [runs],
        )
        declines = {code: int(count) for code, count in cursor.fetchall()}
    return {"total": int(total), "succeeded": int(succeeded), "declines": declines}


def fleet_pool_stats() -> list[dict[str, Any]]:
    """The pool figures every live web and worker process published to Redis, one dict per
    process (see health.fleet for the layout). Raises redis.RedisError when Redis is away."""
    docs = fleet.read_all()
    return sorted(docs, key=lambda d: (d.get("role", ""), d.get("host", ""), d.get("pid", 0)))


def server_connection_stats() -> dict[str, Any]:
    """PostgreSQL's own view: client connections by state and application, against max_connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(application_name, ''), coalesce(state, ''), count(*)
            FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2
            """
        )
        rows = cursor.fetchall()
        cursor.execute(
            "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int"
        )
        max_connections, superuser_reserved = cursor.fetchone()
    by_state: dict[str, int] = {}
    by_application: dict[str, int] = {}
    for application, state, count in rows:
        by_state[state or "unknown"] = by_state.get(state or "unknown", 0) + count
        by_application[application or "(none)"] = by_application.get(application or "(none)", 0) + count
    return {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "by_application": by_application,
        "max_connections": max_connections,
        "superuser_reserved": superuser_reserved,
    }


def health_status(*, detail: bool, now: datetime | None = None) -> tuple[dict[str, Any], Staleness]:
    """The /health/status body and the staleness it reports: the latest run's overall status
    ("stale" when runs stopped, "unknown" before the first), and with `detail` each
    component, the open alerts by severity and the age of the data."""
    now = now or timezone.now()
    run = health_latest_run()
    staleness = health_staleness(now=now, last_run=run)
    if run is None:
        overall = "unknown"
    else:
        overall = "stale" if staleness.stale else run.status
    body: dict[str, Any] = {"status": overall}
    if not detail:
        return body, staleness
    alerts = alerts_open_by_severity(now=now)
    body.update(
        {
            "stale": staleness.stale,
            "checked_at": run.started_at.isoformat() if run else None,
            "age_seconds": staleness.age_seconds,
            "stale_after_seconds": staleness.limit_seconds,
            "run": {"tick": run.tick.isoformat(), "status": run.status, "duration_ms": run.duration_ms,
                    "ran_on": run.ran_on} if run else None,
            "components": {s.component: _snapshot_json(s) for s in run.snapshots.order_by("component")} if run else {},
            "alerts": {severity: [_alert_json(a) for a in items] for severity, items in alerts.items()},
            "alert_counts": {severity: len(items) for severity, items in alerts.items()},
        }
    )
    return body, staleness


def _snapshot_json(snapshot: ComponentSnapshot) -> dict[str, Any]:
    return {
        "status": snapshot.status,
        "message": snapshot.message,
        "utilisation_pct": snapshot.utilisation_pct,
        "in_use": snapshot.in_use,
        "max": snapshot.maximum,
        "waiting": snapshot.waiting,
        "latency_ms": snapshot.latency_ms,
        "errors": snapshot.errors,
        # The per-process totals are bookkeeping for the next run, not news.
        "figures": {key: value for key, value in snapshot.figures.items() if key != TOTALS_KEY},
    }


def _alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "component": alert.component,
        "condition": alert.condition,
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "occurrences": alert.occurrences,
        "payments_in_flight": alert.payments_in_flight,
        "amount_affected": alert.amount_affected,
    }
