"""Writes of the health app: pool statistics, health runs, alerts, silences, notifications."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from config import queueing, ticks
from config.postgres.failures import db_failure_counts
from config.postgres.leaks import leaks as connection_leaks
from config.retention import PRUNE_BATCH, rows_delete_in_batches
from health import fleet
from health.checks import Check, default_checks
from health.checks.base import STATUS_RANK, Reading
from health.checks.runner import run_checks
from health.impact import alert_impact
from health.models import (
    ACTIVE_ALERT_STATUSES,
    SEVERITY_RANK,
    Alert,
    AlertNotification,
    AlertStatus,
    ComponentSnapshot,
    HealthCheckRun,
    NotificationEvent,
    Severity,
    Silence,
)
from health.rules import Finding, findings_for
from health.selectors import Staleness, health_staleness, silences_active
from health.signing import webhook_signed

logger = logging.getLogger(__name__)

HYSTERESIS_CHECKS = 2  # consecutive checks a condition must be absent before its alert clears
REOPEN_WINDOW = timedelta(hours=1)  # a condition back within this reopens its resolved alert
WEBHOOK_TIMEOUT = 10.0  # s
# A notification with no attempt this long after it was written lost its task (a Redis outage
# when it was queued, or a task in transit when the connection broke): the health run sends it
# again. Older ones are news nobody needs any more.
NOTIFY_RESEND_AFTER = timedelta(minutes=2)
NOTIFY_RESEND_WITHIN = timedelta(hours=1)
TICK_SCOPE = "health"  # its claims: payops:health:tick:<epoch s>
PRUNE_SCOPE = "health:prune"
SELF_COMPONENT = "health"  # alerts about the health checks themselves (the dead-man's switch)

DB_COUNTERS = ("requests_num", "requests_queued", "requests_wait_ms", "requests_errors", "usage_ms",
               "connections_num", "connections_errors", "connections_lost", "returns_bad")
HTTP_COUNTERS = ("acquisitions", "wait_ms_total", "pool_full", "requests", "errors", "connections_opened")
LOG_COUNTERS = ("sent", "dropped", "errors", "failed")
WEB_COUNTERS = ("requests", "queued", "wait_ms_total", "shed")
GATEWAY_LIMIT_COUNTERS = ("calls", "shed", "slow", "cuts")


class AlertNotActive(ValidationError):
    pass


class NotificationFailed(Exception):
    pass


# --- Pool statistics -----------------------------------------------------------------------
def pool_stats_collect() -> dict[str, Any]:
    """This process's pool figures (database, HTTP, log shipping): the document it publishes."""
    from config.http.pools import http_pool_stats
    from config.postgres.lane import existing_lane
    from payments.figures import figures_snapshot
    from payments.gateway import gateway_limit_stats

    now = time.time()
    db = _db_pool_figures(_existing_pool())
    answers = _db_pool_figures(existing_lane())  # the answers lane (config/postgres/lane.py)
    failures = db_failure_counts()
    http = http_pool_stats()
    logs = _logging_stats()
    web = queueing.stats(fleet.delta_window())  # a gunicorn worker's threads
    limit = gateway_limit_stats()  # the gateway concurrency limit, once the client exists
    counters: dict[str, float] = {f"dbfail.{key}": value for key, value in failures.items()}
    if db is not None:
        counters.update({f"db.{key}": db[key] for key in DB_COUNTERS})
    if answers is not None:
        counters.update({f"dba.{key}": answers[key] for key in DB_COUNTERS})
    for pool in http:
        counters.update({f"http.{pool['client']}|{pool['host']}.{key}": pool[key] for key in HTTP_COUNTERS})
    if logs is not None:
        counters.update({f"log.{key}": logs.get(key) or 0 for key in LOG_COUNTERS})
    if web is not None:
        counters.update({f"web.{key}": web[key] for key in WEB_COUNTERS})
    if limit is not None:
        counters.update({f"gwl.{key}": limit[key] for key in GATEWAY_LIMIT_COUNTERS})
    recent = fleet.history.recent(now, counters, fleet.delta_window())

    def section(prefix: str) -> dict[str, float]:
        return {key[len(prefix):]: value for key, value in recent.items() if key.startswith(prefix)}

    if db is not None:
        db["recent"] = section("db.")
        db["leaks"] = connection_leaks()
    if answers is not None:
        answers["recent"] = section("dba.")
    for pool in http:
        pool["recent"] = section(f"http.{pool['client']}|{pool['host']}.")
    if logs is not None:
        logs["recent"] = section("log.")
    if web is not None:
        web["recent"] = section("web.")
    if limit is not None:
        limit["recent"] = section("gwl.")
    return {
        "process": fleet.process_id(),
        "host": settings.HOSTNAME,
        "pid": os.getpid(),
        "role": settings.PROCESS_ROLE,
        "at": now,
        "window_s": fleet.delta_window(),
        "db": db,
        "db_answers": answers,
        "db_failures": {"total": failures, "recent": section("dbfail.")},
        "http": http,
        "logging": logs,
        "web": web,
        # Totals since the process started; the health run takes differences between runs.
        "payments": figures_snapshot(),
        "gateway_limit": limit,
    }


def pool_stats_publish() -> dict[str, Any]:
    """Collects this process's figures and publishes them to Redis for the fleet view."""
    doc = pool_stats_collect()
    fleet.write(doc)
    return doc


def _db_pool_figures(pool: Any) -> dict[str, Any] | None:
    if pool is None:
        return None
    # get_stats(), never pop_stats(): popping resets the counters for every other reader.
    stats = pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    figures: dict[str, Any] = {
        "name": pool.name,
        "open": not pool.closed,
        "min": stats.get("pool_min", 0),
        "max": stats.get("pool_max", 0),
        "size": size,
        "idle": idle,
        "in_use": max(0, size - idle),
        "waiting": stats.get("requests_waiting", 0),
    }
    figures.update({key: stats.get(key, 0) for key in DB_COUNTERS})
    return figures


def _existing_pool(alias: str = "default") -> Any:
    """This process's pool for `alias` if something already made it, else None.

    Never `connections[alias].pool`: that property creates the pool, binding it to the
    connection settings of that moment. A process that has not used the database yet has
    nothing to report, and a test run, which switches to its test database after start-up
    (a request at collection time starts this thread), would otherwise keep a pool on the
    development database for the whole session."""
    return getattr(type(connections[alias]), "_connection_pools", {}).get(alias)


def _logging_stats() -> dict[str, Any] | None:
    try:
        from config.logs.cloudwatch import handler_stats
    except ImportError:
        return None
    stats = handler_stats()
    return dict(stats) if stats is not None else None


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
        _stale_switch_lock()
        _stale_alert_clear(seen_at=started_at)
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


# --- Alerts ----------------------------------------------------------------------------------
@transaction.atomic
def alert_raise(*, component: str, condition: str, severity: str, message: str,
                seen_at: datetime | None = None, impact: dict[str, Any] | None = None) -> Alert:
    """Opens the alert for component/condition, reopens it if it cleared recently, or bumps the
    active one; severity rises or falls in place, and an error that lasts beyond
    ALERT_ESCALATE_AFTER checks becomes critical."""
    now = seen_at or timezone.now()
    alert = _active_alert(component, condition)
    change = "seen"
    if alert is None:
        alert = (Alert.objects.select_for_update()
                 .filter(component=component, condition=condition, status=AlertStatus.RESOLVED,
                         resolved_at__gte=now - REOPEN_WINDOW)
                 .order_by("-resolved_at").first())
        if alert is not None:
            change = "reopened"
            alert.status = AlertStatus.OPEN
            alert.reopened += 1
            alert.resolved_at = alert.resolved_by = alert.acknowledged_at = alert.acknowledged_by = None
            alert.resolution_note = alert.acknowledgement_note = ""
            alert.occurrences += 1
            alert.streak = 1
        else:
            created = _alert_create(component=component, condition=condition, severity=severity,
                                    message=message, now=now)
            if created is None:  # another process opened it a moment ago
                return alert_raise(component=component, condition=condition, severity=severity,
                                   message=message, seen_at=seen_at, impact=impact)
            alert, change = created, "raised"
    else:
        alert.occurrences += 1
        alert.streak += 1
    alert.absent_checks = 0
    alert.last_seen = max(alert.last_seen, now)
    alert.message = message[:500]
    if severity == Severity.ERROR and alert.streak > settings.ALERT_ESCALATE_AFTER:
        severity = Severity.CRITICAL
        alert.message = f"{message} (for {alert.streak} checks)"[:500]
    previous = alert.severity
    alert.severity, alert.severity_rank = severity, SEVERITY_RANK[severity]
    if alert.status == AlertStatus.ACKNOWLEDGED and alert.severity_rank > SEVERITY_RANK[previous]:
        alert.status = AlertStatus.OPEN  # worse than what was acknowledged: it needs eyes again
    _impact_record(alert, alert_impact(component=component, first_seen=alert.first_seen, in_flight=impact))
    alert.save()
    _alert_log(alert, change, previous=previous)
    _notify_if_due(alert, now=now)
    return alert


def _active_alert(component: str, condition: str) -> Alert | None:
    return (Alert.objects.select_for_update()
            .filter(component=component, condition=condition, status__in=ACTIVE_ALERT_STATUSES).first())


def _alert_create(*, component: str, condition: str, severity: str, message: str, now: datetime) -> Alert | None:
    try:
        with transaction.atomic():
            return Alert.objects.create(
                component=component, condition=condition, severity=severity, severity_rank=SEVERITY_RANK[severity],
                message=message[:500], first_seen=now, last_seen=now,
            )
    except IntegrityError:
        return None


def _impact_record(alert: Alert, impact: dict[str, Any] | None) -> None:
    # The most seen at once while it was open: a payment settled since still counted then.
    if not impact:
        return
    alert.payments_in_flight = max(alert.payments_in_flight or 0, int(impact.get("count") or 0))
    amounts = dict(alert.amount_affected or {})
    for currency, amount in (impact.get("amounts") or {}).items():
        amounts[currency] = max(int(amounts.get(currency, 0)), int(amount or 0))
    alert.amount_affected = amounts


def _alert_log(alert: Alert, change: str, *, previous: str) -> None:
    extra = {"alert_id": alert.pk, "component": alert.component, "condition": alert.condition,
             "severity": alert.severity, "status": alert.status, "occurrences": alert.occurrences}
    if change in ("raised", "reopened"):
        logger.warning("alert %s %s/%s: %s", change, alert.component, alert.condition, alert.message,
                       extra={"category": "alert_raised", "reopened": change == "reopened", **extra})
    elif previous != alert.severity:
        logger.warning("alert %s/%s is now %s (was %s)", alert.component, alert.condition, alert.severity, previous,
                       extra={"category": "alert_severity_changed", "previous_severity": previous, **extra})
    else:
        logger.debug("alert %s/%s seen again", alert.component, alert.condition,
                     extra={"category": "alert_seen", **extra})


def _silenced(alert: Alert, now: datetime) -> bool:
    return any(s.matches(component=alert.component, condition=alert.condition) for s in silences_active(now=now))


def _notify_if_due(alert: Alert, *, now: datetime) -> None:
    """New error/critical alerts, and rises to a severity not yet told, are notified once each."""
    if alert.severity_rank < SEVERITY_RANK[Severity.ERROR] or alert.severity_rank <= alert.notified_rank:
        return
    if _silenced(alert, now):
        return
    event = NotificationEvent.RAISED if alert.notified_rank == 0 else NotificationEvent.ESCALATED
    alert.notified_rank = alert.severity_rank
    alert.save(update_fields=["notified_rank", "updated_at"])
    _notification_queue(alert, event)


def _notification_queue(alert: Alert, event: str) -> None:
    notification = AlertNotification.objects.create(alert=alert, event=event, severity=alert.severity)
    if alert.component == SELF_COMPONENT:
        # The dead-man's switch trips when the workers may be what stopped: it cannot count on
        # them to deliver its news, so this process sends it, off the caller's thread.
        transaction.on_commit(lambda: threading.Thread(
            target=_in_own_connection, args=(lambda: _notification_send_quietly(notification.pk),),
            name="health-notify", daemon=True).start())
        return
    # After commit, so the task finds the row and the check never waits for a mail server.
    transaction.on_commit(lambda: _notification_enqueue(notification.pk))


def _notification_enqueue(notification_id: int) -> None:
    from health.tasks import alert_notify

    try:
        # One try, bounded by the broker's socket timeouts (a breaker alert is raised in the
        # request that tripped the breaker); a notification not queued is sent again by a
        # later health run (alert_notifications_resend).
        alert_notify.apply_async((notification_id,), retry=False)
    except Exception:  # noqa: BLE001
        logger.warning("alert notification %s not queued", notification_id,
                       extra={"category": "alert_notify_queue_error", "notification_id": notification_id})


def _notification_send_quietly(notification_id: int) -> None:
    try:
        alert_notification_send(notification_id=notification_id)
    except NotificationFailed:
        # Logged and recorded on the row; the queue's retries (with backoff) take it from here,
        # and run as soon as a worker is back.
        _notification_enqueue(notification_id)


@transaction.atomic
def alert_acknowledge(*, alert: Alert, by: User, note: str = "") -> Alert:
    """Ops have seen it: open -> acknowledged, with who, when and why."""
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if not alert.is_active:
        raise AlertNotActive("A resolved alert cannot be acknowledged.")
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = by
    alert.acknowledged_at = timezone.now()
    alert.acknowledgement_note = note
    alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at", "acknowledgement_note", "updated_at"])
    logger.info("alert acknowledged %s/%s by %s", alert.component, alert.condition, by.get_username(),
                extra={"category": "alert_acknowledged", "alert_id": alert.pk, "by": by.get_username()})
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, by: User | None = None, note: str = "",
                  now: datetime | None = None) -> Alert:
    """Closes the alert; a resolution is notified wherever its raising was."""
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if not alert.is_active:
        return alert
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = now or timezone.now()
    alert.resolved_by = by
    alert.resolution_note = note
    alert.streak = 0
    notified = alert.notified_rank >= SEVERITY_RANK[Severity.ERROR]
    alert.notified_rank = 0
    alert.save()
    logger.info(
        "alert resolved %s/%s: %s", alert.component, alert.condition, note or "by hand",
        extra={"category": "alert_resolved", "alert_id": alert.pk, "component": alert.component,
               "condition": alert.condition, "severity": alert.severity,
               "by": by.get_username() if by is not None else None},
    )
    if notified:
        _notification_queue(alert, NotificationEvent.RESOLVED)
    return alert


def alert_silence(*, by: User, reason: str, ends_at: datetime, component: str = "",
                  condition: str = "", starts_at: datetime | None = None) -> Silence:
    """Mutes notifications for a component and/or condition during a window; alerts are still recorded."""
    starts_at = starts_at or timezone.now()
    if not reason.strip():
        raise ValidationError({"reason": "Say why the alerts are silenced."})
    if not (component or condition):
        raise ValidationError("Name a component, a condition, or both.")
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": "The silence must end after it starts."})
    silence = Silence.objects.create(component=component, condition=condition, starts_at=starts_at,
                                     ends_at=ends_at, reason=reason.strip(), created_by=by)
    logger.info("alerts silenced %s/%s until %s by %s", component or "*", condition or "*", ends_at.isoformat(),
                by.get_username(), extra={"category": "alert_silenced", "silence_id": silence.pk,
                                          "by": by.get_username(), "reason": silence.reason})
    return silence


def alert_silence_end(*, silence: Silence, by: User) -> Silence:
    now = timezone.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at + timedelta(microseconds=1))
        silence.save(update_fields=["ends_at"])
        logger.info("silence %s ended by %s", silence.pk, by.get_username(),
                    extra={"category": "alert_silence_ended", "silence_id": silence.pk})
    return silence


def alert_from_breaker_transition(*, old: str, new: str, snapshot: Any) -> None:
    """Called by the gateway breaker on each transition: opened -> error alert
    gateway/circuit_open, closed -> resolved. Never raises.

    Gateway calls run outside transactions, so this normally writes at once on the caller's
    own connection (a transition is rare; it costs a few queries). Inside a transaction it
    writes from a thread with a connection of its own instead, so that a rollback of the
    caller's work cannot take the alert with it."""
    if new == "open":
        severity, message = breaker_open_finding(snapshot, old=old)

        def work() -> None:
            alert_raise(component="gateway", condition="circuit_open", severity=severity, message=message,
                        impact=_in_flight())
    elif new == "closed":
        def work() -> None:
            alert = Alert.objects.filter(component="gateway", condition="circuit_open",
                                         status__in=ACTIVE_ALERT_STATUSES).first()
            if alert is not None:
                alert_resolve(alert=alert, note=f"circuit breaker closed (was {old})")
    else:
        return
    if connection.in_atomic_block:
        threading.Thread(target=_in_own_connection, args=(work,), name="health-breaker-alert", daemon=True).start()
        return
    try:
        work()
    except Exception:  # noqa: BLE001 - the payment that tripped the breaker must not notice
        logger.exception("breaker alert not recorded", extra={"category": "alert_error"})


def breaker_open_finding(snapshot: Any, *, old: str = "closed") -> tuple[str, str]:
    """Severity and message of an open breaker; an open forced by ops is only a warning."""
    if snapshot.forced:
        return Severity.WARNING, f"circuit breaker forced open by {snapshot.forced.get('by')}: " \
                                 f"{snapshot.forced.get('reason')}"
    if old == "half_open":
        return Severity.ERROR, f"circuit breaker open again: the half-open probe failed; next try in " \
                               f"{snapshot.retry_after:.0f} s"
    failed = f"{snapshot.failures} of {snapshot.calls} calls failed; " if snapshot.calls >= 0 else ""
    return Severity.ERROR, f"circuit breaker open: {failed}next try in {snapshot.retry_after:.0f} s"


def _in_own_connection(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001
        logger.exception("breaker alert not recorded", extra={"category": "alert_error"})
    finally:
        connections.close_all()


def _in_flight() -> dict[str, Any] | None:
    try:
        from payments.selectors import payment_in_flight_summary

        return payment_in_flight_summary()
    except Exception:  # noqa: BLE001 - the alert matters more than its figures
        return None


# --- The dead-man's switch -------------------------------------------------------------------
STALE_SWITCH_LOCK = 0x70617973_7374616C  # pg_advisory_xact_lock key ("pays" "stal")


def _stale_switch_lock() -> None:
    """Orders a web process tripping the switch against a run landing: without it, a process
    that read the last run just before a new one committed raises (or reopens) the alert right
    after that run resolved it, and ops are paged for an episode that is over."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STALE_SWITCH_LOCK])


@transaction.atomic
def health_stale_alert(*, staleness: Staleness) -> Alert | None:
    """Raises the critical health/stale alert when runs stopped, at most once per interval."""
    if not staleness.stale or staleness.last_run_at is None:
        return None
    _stale_switch_lock()
    # Read again under the lock: a run that landed since the caller looked ends the episode.
    staleness = health_staleness()
    if not staleness.stale or staleness.last_run_at is None:
        return None
    now = timezone.now()
    recent = Alert.objects.filter(component=SELF_COMPONENT, condition="stale", status__in=ACTIVE_ALERT_STATUSES,
                                  last_seen__gte=now - timedelta(seconds=settings.HEALTH_CHECK_INTERVAL))
    if recent.exists():
        return None
    return alert_raise(
        component=SELF_COMPONENT, condition="stale", severity=Severity.CRITICAL, seen_at=now,
        message=f"no health check for {staleness.age_seconds:.0f} s (limit {staleness.limit_seconds:.0f} s): "
                "is beat or every worker down?",
    )


def _stale_alert_clear(*, seen_at: datetime) -> None:
    # A run is the proof the switch waits for: no hysteresis.
    for alert in Alert.objects.filter(component=SELF_COMPONENT, condition="stale",
                                      status__in=ACTIVE_ALERT_STATUSES):
        alert_resolve(alert=alert, note="health checks run again", now=seen_at)


# --- Notifications ----------------------------------------------------------------------------
def alert_notifications_resend(*, now: datetime) -> int:
    """Queues again the notifications whose task never ran (see NOTIFY_RESEND_AFTER); each is
    queued after commit and sent once per channel whatever else runs."""
    lost = list(AlertNotification.objects.filter(
        attempts=0, created_at__lt=now - NOTIFY_RESEND_AFTER, created_at__gte=now - NOTIFY_RESEND_WITHIN,
    ).exclude(claimed_until__gte=now).values_list("pk", flat=True))
    for pk in lost:
        logger.warning("alert notification %s never attempted: queued again", pk,
                       extra={"category": "alert_notify_resent", "notification_id": pk})
        transaction.on_commit(functools.partial(_notification_enqueue, pk))
    return len(lost)


def _notification_claim(notification_id: int) -> bool:
    now = timezone.now()
    hold = timedelta(seconds=settings.EMAIL_TIMEOUT + WEBHOOK_TIMEOUT + 30)
    return bool(AlertNotification.objects.filter(pk=notification_id)
                .exclude(claimed_until__gte=now).update(claimed_until=now + hold))


def alert_notification_send(*, notification_id: int) -> AlertNotification | None:
    """Sends one notification by e-mail (ALERT_EMAILS) and webhook (ALERT_WEBHOOK_URL); a channel
    already sent is never sent again, so a retried task repeats only what failed. One sender at
    a time (a claim on the row): None when the row is gone or another sender holds it."""
    if not _notification_claim(notification_id):
        return None
    notification = AlertNotification.objects.select_related("alert").get(pk=notification_id)
    pending_email = bool(settings.ALERT_EMAILS) and notification.email_sent_at is None
    pending_webhook = bool(settings.ALERT_WEBHOOK_URL) and notification.webhook_sent_at is None
    if not (pending_email or pending_webhook) and notification.attempts:
        # A resent copy of a task that did run after all: nothing left to do.
        AlertNotification.objects.filter(pk=notification.pk).update(claimed_until=None)
        return notification
    alert = notification.alert
    errors = []
    if settings.ALERT_EMAILS and notification.email_sent_at is None:
        try:
            subject, body = _email_text(notification)
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, settings.ALERT_EMAILS, fail_silently=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"email: {exc.__class__.__name__}")
        else:
            notification.email_sent_at = timezone.now()
    if settings.ALERT_WEBHOOK_URL and notification.webhook_sent_at is None:
        try:
            from config.http.outbound import get_outbound

            signed, headers = webhook_signed(payload=_webhook_body(notification), secret=settings.ALERT_WEBHOOK_SECRET)
            response = get_outbound().request("POST", settings.ALERT_WEBHOOK_URL, data=signed, headers=headers,
                                              timeout=WEBHOOK_TIMEOUT)
            if not 200 <= response.status_code < 300:
                raise NotificationFailed(f"answered {response.status_code}")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"webhook: {exc.__class__.__name__} {exc if isinstance(exc, NotificationFailed) else ''}")
        else:
            notification.webhook_sent_at = timezone.now()
    notification.attempts += 1
    notification.last_error = "; ".join(e.strip() for e in errors)[:300]
    notification.claimed_until = None
    notification.save(update_fields=["email_sent_at", "webhook_sent_at", "attempts", "last_error", "claimed_until"])
    extra = {"alert_id": alert.pk, "notification_id": notification.pk, "event": notification.event,
             "severity": notification.severity}
    if errors:
        logger.warning("alert notification failed: %s", notification.last_error,
                       extra={"category": "alert_notify_failed", **extra})
        raise NotificationFailed(notification.last_error)
    logger.info("alert notification sent: %s %s/%s", notification.event, alert.component, alert.condition,
                extra={"category": "alert_notified", **extra})
    return notification


def _email_text(notification: AlertNotification) -> tuple[str, str]:
    alert = notification.alert
    subject = f"[payops] {notification.severity.upper()} {alert.component}/{alert.condition} {notification.event}"
    lines = [
        alert.message, "",
        f"Status: {alert.status}", f"Severity: {notification.severity}",
        f"First seen: {alert.first_seen.isoformat()}", f"Last seen: {alert.last_seen.isoformat()}",
        f"Occurrences: {alert.occurrences}",
    ]
    if alert.payments_in_flight is not None:
        lines.append(f"Payments affected: {alert.payments_in_flight} {alert.amount_affected}")
    if alert.resolved_at:
        lines.append(f"Resolved: {alert.resolved_at.isoformat()} {alert.resolution_note}")
    return subject, "\n".join(lines)


def _webhook_body(notification: AlertNotification) -> dict[str, Any]:
    alert = notification.alert
    return {
        "service": "payops",
        "event": notification.event,
        "notification_id": notification.pk,
        "alert": {
            "id": alert.pk, "component": alert.component, "condition": alert.condition,
            "severity": notification.severity, "status": alert.status, "message": alert.message,
            "first_seen": alert.first_seen.isoformat(), "last_seen": alert.last_seen.isoformat(),
            "occurrences": alert.occurrences, "payments_in_flight": alert.payments_in_flight,
            "amount_affected": alert.amount_affected,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        },
    }
