"""Writes of the console. Each changing action calls the health or payments service that
does the work and records who did it and why as an admin log entry (the console's audit trail)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from config.redis import get_redis
from health.console.drills.gateway import payment_timeout, payment_timeout_refusal
from health.console.drills.limits import DrillRefused, Progress
from health.console.drills.logs import log_test
from health.console.drills.pools import db_pool_stress, http_pool
from health.console.selectors import PROGRESS_KEY, drill_progress
from health.console.tasks import DRILL_TIME_LIMIT, drill_run
from health.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    BreakerOverride,
    DrillKind,
    DrillRun,
    DrillStatus,
    Silence,
)
from health.services.alerts import alert_acknowledge, alert_resolve, alert_silence

logger = logging.getLogger(__name__)

DRILL_QUEUE_WAIT = 120  # s a drill may wait for a worker before it counts as abandoned
PROGRESS_TTL = 3600  # s


@dataclass
class ActionReport:
    """What a bulk action did, to tell the operator."""

    done: list[Alert] = field(default_factory=list)
    skipped: list[tuple[Alert, str]] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)


def audit_log(*, by: User, message: str, obj: models.Model | None = None, repr_: str = "",
              flag: int = CHANGE) -> LogEntry:
    """An admin log entry: who, when (now), on what, and the message that says what and why."""
    return LogEntry.objects.create(
        user_id=by.pk, content_type=ContentType.objects.get_for_model(obj) if obj is not None else None,
        object_id=str(obj.pk) if obj is not None else None, object_repr=(repr_ or str(obj))[:200],
        action_flag=flag, change_message=message,
    )


# --- Alerts -------------------------------------------------------------------------------------
@transaction.atomic
def alerts_acknowledge(*, alerts: Iterable[Alert], by: User, note: str) -> ActionReport:
    report = ActionReport()
    for alert in alerts:
        if alert.status != "open":
            report.skipped.append((alert, f"already {alert.status}"))
            continue
        alert = alert_acknowledge(alert=alert, by=by, note=note)
        audit_log(by=by, obj=alert, message=f"Acknowledged: {note}")
        report.done.append(alert)
    return report


@transaction.atomic
def alerts_resolve(*, alerts: Iterable[Alert], by: User, note: str) -> ActionReport:
    report = ActionReport()
    for alert in alerts:
        if alert.status not in ACTIVE_ALERT_STATUSES:
            report.skipped.append((alert, "already resolved"))
            continue
        alert = alert_resolve(alert=alert, by=by, note=note)
        audit_log(by=by, obj=alert, message=f"Resolved: {note}")
        report.done.append(alert)
    return report


@transaction.atomic
def alerts_silence(*, alerts: Iterable[Alert], by: User, reason: str, duration: timedelta,
                   now: datetime | None = None) -> ActionReport:
    """One silence per component/condition among the alerts, from now for `duration`."""
    now = now or timezone.now()
    report = ActionReport()
    made: dict[tuple[str, str], Silence] = {}
    for alert in alerts:
        key = (alert.component, alert.condition)
        if key not in made:
            made[key] = alert_silence(by=by, reason=reason, ends_at=now + duration,
                                      component=alert.component, condition=alert.condition,
                                      starts_at=now)
            report.silences.append(made[key])
            audit_log(by=by, obj=made[key], flag=ADDITION,
                      message=f"Silenced {alert.component}/{alert.condition} until "
                              f"{made[key].ends_at:%Y-%m-%d %H:%M} UTC: {reason}")
        audit_log(by=by, obj=alert, message=f"Silenced for {_duration(duration)}: {reason}")
        report.done.append(alert)
    return report


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 and minutes >= 60 else f"{minutes} min"


# --- The gateway breaker -------------------------------------------------------------------------
@transaction.atomic
def breaker_force(*, by: User, state: str, reason: str, minutes: int) -> datetime:
    """Holds the gateway's circuit open or closed for the whole fleet until now + `minutes`."""
    from payments.gateway import get_gateway

    until = timezone.now() + timedelta(minutes=minutes)
    _breaker(get_gateway()).force(state=state, reason=reason, until=until, by=by.get_username())
    override = BreakerOverride.objects.create(state=state, reason=reason, until=until, forced_by=by)
    audit_log(by=by, obj=override, flag=ADDITION,
              message=f"Forced {state} until {until:%Y-%m-%d %H:%M} UTC: {reason}")
    logger.warning("breaker forced %s by %s from the console", state, by.get_username(),
                   extra={"category": "console_breaker_forced", "state": state, "by": by.get_username(),
                          "minutes": minutes})
    return until


def _breaker(gateway: Any) -> Any:
    if gateway.breaker is None:
        raise RuntimeError("this gateway client has no circuit breaker to force")
    return gateway.breaker


@transaction.atomic
def breaker_force_clear(*, by: User, reason: str) -> None:
    from payments.gateway import get_gateway

    _breaker(get_gateway()).clear_force(by=by.get_username())
    now = timezone.now()
    override = BreakerOverride.objects.filter(ended_at__isnull=True, until__gt=now).first()
    if override is None:
        # Forced by other means (the CLI, Redis) or already run out: the entry still says who ended it.
        audit_log(by=by, repr_="payment gateway circuit breaker", message=f"Override ended: {reason}")
        return
    override.ended_at, override.ended_by, override.end_reason = now, by, reason
    override.save(update_fields=["ended_at", "ended_by", "end_reason"])
    audit_log(by=by, obj=override, message=f"Override ended: {reason}")


# --- Drills -------------------------------------------------------------------------------------
class DrillBusy(Exception):
    def __init__(self, run: DrillRun | None) -> None:
        super().__init__("this drill is already running")
        self.run = run


def drill_start(*, kind: str, params: dict[str, Any], by: User) -> DrillRun:
    """Records the run and queues it after commit; a second start while one of the same kind
    is queued or running raises DrillBusy (the database's partial unique index decides)."""
    if kind not in DrillKind.values:
        raise ValueError(f"unknown drill {kind!r}")
    now = timezone.now()
    # A run whose worker vanished must not block the drill for ever.
    DrillRun.objects.filter(kind=kind, status__in=["queued", "running"], deadline_at__lt=now).update(
        status=DrillStatus.FAILED, finished_at=now, error="abandoned: no result before its deadline")
    refusal = payment_timeout_refusal() if kind == DrillKind.PAYMENT_TIMEOUT else None
    if refusal:
        run = DrillRun.objects.create(kind=kind, params=params, started_by=by, status=DrillStatus.REFUSED,
                                      error=refusal[:500], deadline_at=now, finished_at=now)
        audit_log(by=by, obj=run, flag=ADDITION, message=f"Refused {run.get_kind_display()}: {refusal}")
        return run
    try:
        with transaction.atomic():
            run = DrillRun.objects.create(
                kind=kind, params=params, started_by=by,
                deadline_at=now + timedelta(seconds=DRILL_QUEUE_WAIT + DRILL_TIME_LIMIT),
            )
            audit_log(by=by, obj=run, flag=ADDITION,
                      message=f"Started {run.get_kind_display()} "
                              f"({', '.join(f'{k}={v}' for k, v in params.items()) or 'no parameters'})")

            drill_run.delay_on_commit(run.pk)
    except IntegrityError:
        raise DrillBusy(DrillRun.objects.filter(kind=kind, status__in=["queued", "running"]).first()) from None
    return run


def drill_execute(*, run_id: int) -> DrillRun | None:
    """Runs a queued drill once: a redelivered task finds it running or finished and stops."""
    from health.fleet import process_id

    now = timezone.now()
    claimed = DrillRun.objects.filter(pk=run_id, status=DrillStatus.QUEUED).update(
        status=DrillStatus.RUNNING, started_at=now, ran_on=process_id())
    run = DrillRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    if not claimed:
        if run.status == DrillStatus.RUNNING and run.ran_on != process_id():
            # Delivered again after its worker was lost mid-drill: say so, do not run it twice.
            DrillRun.objects.filter(pk=run_id, status=DrillStatus.RUNNING).update(
                status=DrillStatus.FAILED, finished_at=timezone.now(), error="the worker running it was lost")
        return run
    progress = _progress_reporter(run_id)
    try:
        result = _dispatch(run, progress)
    except DrillRefused as exc:
        return _finish(run_id, status=DrillStatus.REFUSED, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the console shows what went wrong
        logger.exception("drill %s failed", run_id, extra={"category": "drill_failed", "drill_id": run_id})
        return _finish(run_id, status=DrillStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:500])
    return _finish(run_id, status=DrillStatus.SUCCEEDED, result=result)


def _dispatch(run: DrillRun, progress: Progress) -> dict[str, Any]:
    p = run.params
    if run.kind == DrillKind.DB_POOL:
        return db_pool_stress(concurrency=int(p.get("concurrency", 25)),
                              pool_max=int(p.get("pool_max", settings.DB_MAX_CONNECTIONS)),
                              hold_ms=int(p.get("hold_ms", 1000)), progress=progress)
    if run.kind == DrillKind.HTTP_POOL:
        return http_pool(concurrency=int(p.get("concurrency", 15)), rounds=int(p.get("rounds", 2)),
                         progress=progress)
    if run.kind == DrillKind.PAYMENT_TIMEOUT:
        return payment_timeout(timeouts=int(p.get("timeouts", settings.PAYMENT_RETRY_ATTEMPTS)),
                               amount=int(p.get("amount", 100)), progress=progress)
    if run.kind == DrillKind.LOG_TEST:
        return log_test(run_id=run.pk, progress=progress)
    raise ValueError(f"unknown drill {run.kind!r}")


def _finish(run_id: int, *, status: str, result: dict[str, Any] | None = None, error: str = "") -> DrillRun:
    DrillRun.objects.filter(pk=run_id).update(status=status, result=result or {}, error=error[:500],
                                              finished_at=timezone.now(), progress=drill_progress(run_id) or {})
    logger.info("drill %s %s", run_id, status, extra={"category": "drill_finished", "drill_id": run_id,
                                                      "status": status})
    return DrillRun.objects.get(pk=run_id)


def _progress_reporter(run_id: int) -> Progress:
    """Progress goes to Redis, never to the database: the database pool may be what is drilled."""
    key = PROGRESS_KEY.format(run_id)

    def report(done: int, total: int, message: str) -> None:
        try:
            get_redis().set(key, json.dumps({"done": done, "total": total, "message": message,
                                             "at": timezone.now().isoformat()}), ex=PROGRESS_TTL)
        except Exception:  # noqa: BLE001 - progress is a courtesy; the drill goes on
            pass

    return report
