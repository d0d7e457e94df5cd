"""Health runs: one per tick fleet-wide, its snapshots, the alerts its findings raise or clear,
its metrics, and the history's pruning."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config import ticks
from config.retention import PRUNE_BATCH, rows_delete_in_batches
from health import fleet
from health.checks import Check, default_checks
from health.checks.base import STATUS_RANK, Reading
from health.checks.runner import run_checks
from health.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    ComponentSnapshot,
    HealthCheckRun,
    Severity,
)
from health.rules import Finding, findings_for
from health.services.alerts import alert_raise, alert_resolve
from health.services.notifications import alert_notifications_resend
from health.services.switch import stale_alert_clear, stale_switch_lock

logger = logging.getLogger(__name__)


HYSTERESIS_CHECKS = 2  # consecutive checks a condition must be absent before its alert clears


TICK_SCOPE = "health"  # its claims: payops:health:tick:<epoch s>


PRUNE_SCOPE = "health:prune"


# --- Health runs ---------------------------------------------------------------------------
def health_check_run(*, now: datetime | None = None, interval: int | None = None,
                     checks: Sequence[Check] | None = None, sent_at: datetime | None = None,
                     claim_id: str | None = None) -> HealthCheckRun | None:
    """Measures every component once for the tick `sent_at` (when beat sent the message; else
    `now`) falls in, stores the run, its snapshots and the alert changes in one transaction;
    None when that tick already has its run. `claim_id` (the Celery task id) lets a redelivery
    of the same message through the tick claim; a copy from a second beat is skipped."""
    interval = interval or settings.HEALTH_CHECK_INTERVAL
    started_at = now or timezone.now()
    tick_at = sent_at or started_at
    tick = datetime.fromtimestamp(ticks.tick_of(tick_at.timestamp(), interval), tz=UTC)
    holder = claim_id or f"{fleet.process_id()}:{uuid.uuid4().hex}"
    if not ticks.tick_claim(scope=TICK_SCOPE, tick=int(tick.timestamp()), holder=holder,
                            ttl=ticks.claim_ttl(interval)):
        return None
    clock = time.perf_counter()
    readings = run_checks(default_checks() if checks is None else checks)
    impact = _impact(readings)
    duration = time.perf_counter() - clock
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = HealthCheckRun.objects.create(
                    tick=tick, started_at=started_at, finished_at=started_at + timedelta(seconds=duration),
                    duration_ms=round(duration * 1000, 2), status=_overall(readings), ran_on=fleet.process_id(),
                )
        except IntegrityError:
            # Redis was away (or lost the claim) and another worker ran this tick too; PostgreSQL kept one.
            logger.info("health tick %s already stored; skipped", tick.isoformat(),
                        extra={"category": "tick_skipped", "scope": TICK_SCOPE, "tick": tick.isoformat()})
            return None
        ComponentSnapshot.objects.bulk_create(
            [_snapshot(run, name, reading) for name, reading in readings.items()]
        )
        _alerts_apply(readings=readings, seen_at=started_at, impact=impact)
        stale_switch_lock()
        stale_alert_clear(seen_at=started_at)
        alert_notifications_resend(now=started_at)
    logger.info(
        "health run %s: %s in %.0f ms", tick.isoformat(), run.status, run.duration_ms,
        extra={"category": "health_run", "status": run.status, "duration_ms": run.duration_ms,
               "components": {name: r.status for name, r in readings.items()}},
    )
    _emit_metrics(readings, run)
    return run


# Components whose outage leaves payments flowing (rate limit and breaker fall back to each
# process): down themselves, they make the service degraded, never down.
DEGRADE_ONLY = frozenset({"redis"})


def _overall(readings: dict[str, Reading]) -> str:
    worst = max((min(STATUS_RANK.get(r.status, 2), STATUS_RANK["degraded"]) if name in DEGRADE_ONLY
                 else STATUS_RANK.get(r.status, 2) for name, r in readings.items()), default=0)
    return {rank: status for status, rank in STATUS_RANK.items()}[worst]


def _snapshot(run: HealthCheckRun, name: str, reading: Reading) -> ComponentSnapshot:
    figures = reading.figures

    def number(key: str) -> Any:
        value = figures.get(key)
        return value if isinstance(value, (int, float)) else None

    utilisation = number("utilisation_pct")
    if utilisation is None:
        utilisation = max((v for v in reading.utilisation.values() if v is not None), default=None)
    return ComponentSnapshot(
        run=run, checked_at=run.started_at, component=name, status=reading.status,
        message=reading.message[:300], utilisation_pct=utilisation, in_use=number("in_use"),
        maximum=number("max"), waiting=number("waiting"), latency_ms=number("latency_ms"),
        errors=number("errors"), figures=figures,
    )


def _impact(readings: dict[str, Reading]) -> dict[str, Any] | None:
    payments = readings.get("payments")
    return payments.figures.get("in_flight") if payments is not None else None


def _alerts_apply(*, readings: dict[str, Reading], seen_at: datetime, impact: dict[str, Any] | None) -> None:
    active = {(a.component, a.condition): a
              for a in Alert.objects.select_for_update().filter(status__in=ACTIVE_ALERT_STATUSES)}
    findings: list[Finding] = []
    for name, reading in readings.items():
        findings.extend(findings_for(name, reading, active=active))
    findings = _escalate_when_payments_fail(findings)
    present = set()
    for finding in findings:
        present.add((finding.component, finding.condition))
        alert_raise(component=finding.component, condition=finding.condition, severity=finding.severity,
                    message=finding.message, seen_at=seen_at, impact=impact)
    for key, alert in active.items():
        observed = readings.get(alert.component)
        # Only what this run observed can be absent: a component it did not check, or one
        # that was down (its pools unmeasured), keeps its other alerts as they are.
        if key in present or observed is None or observed.status == "down":
            continue
        alert.absent_checks += 1
        alert.streak = 0
        alert.save(update_fields=["absent_checks", "streak", "updated_at"])
        if alert.absent_checks >= HYSTERESIS_CHECKS:
            alert_resolve(alert=alert, note=f"absent for {alert.absent_checks} consecutive checks", now=seen_at)


def _escalate_when_payments_fail(findings: list[Finding]) -> list[Finding]:
    """A gateway error while payments sit unsettled past their age limit stops payments: critical."""
    if not any(f.component == "payments" and f.condition == "unknown_overdue" for f in findings):
        return findings
    return [
        Finding(f.component, f.condition, Severity.CRITICAL, f.message + " (payments are failing)")
        if f.component == "gateway" and f.severity == Severity.ERROR else f
        for f in findings
    ]


def _emit_metrics(readings: dict[str, Reading], run: HealthCheckRun) -> None:
    try:
        from config.logs.emf import emit_metrics
    except ImportError:
        return
    try:
        for name, reading in readings.items():
            f = reading.figures
            emit_metrics(None, {"component": name}, {
                "HealthStatus": (STATUS_RANK.get(reading.status, 2), "None"),
                "Utilisation": (f.get("utilisation_pct"), "Percent"),
                "InUse": (f.get("in_use"), "Count"),
                "Waiting": (f.get("waiting"), "Count"),
                "LatencyMs": (f.get("latency_ms"), "Milliseconds"),
                "Errors": (f.get("errors"), "Count"),
            })
        emit_metrics(None, {"component": "health"}, {"RunDurationMs": (run.duration_ms, "Milliseconds")})
        payments = readings.get("payments")
        traffic = payments.figures.get("traffic") if payments is not None else None
        if traffic:
            from health.payment_figures import emf_metrics

            emit_metrics(None, {"component": "payments"}, emf_metrics(traffic))
            # One record per top decline code of the interval: a code is a dimension, so a
            # CloudWatch alarm can watch one issuer answer rising.
            for code, count in traffic.get("declines", {}).items():
                emit_metrics(None, {"component": "payments", "decline_code": code[:100]},
                             {"PaymentsDeclined": (count, "Count")})
    except Exception:  # noqa: BLE001 - metrics are a by-product; the run is stored
        logger.exception("health metrics not emitted", extra={"category": "metrics_error"})


def health_history_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> dict[str, int]:
    """Deletes snapshots and runs older than HEALTH_RETENTION_DAYS, `batch` rows per statement."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.HEALTH_RETENTION_DAYS)
    deleted = {
        "snapshots": rows_delete_in_batches(rows=ComponentSnapshot.objects.filter(checked_at__lt=cutoff),
                                            oldest_first_by="checked_at", batch=batch),
        "runs": rows_delete_in_batches(rows=HealthCheckRun.objects.filter(tick__lt=cutoff),
                                       oldest_first_by="tick", batch=batch),
    }
    logger.info("health history pruned: %s snapshots, %s runs", deleted["snapshots"], deleted["runs"],
                extra={"category": "health_pruned", **deleted})
    return deleted
