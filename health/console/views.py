"""The console's own admin pages: System Health (and its live fragment), the breaker override,
the runbook, and the drills. Each is wired in health.admin through a ModelAdmin's get_urls and
wrapped by admin_view, so only active staff reach them; each checks its own permission."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from health.console import cards, selectors, services
from health.console.charts import Span, Threshold, line_chart, timeline_chart
from health.console.forms import DRILL_FORMS, BreakerClearForm, BreakerForceForm
from health.console.payment_figures import payments_overview
from health.console.runbook import load_runbook
from health.console.users import acting_user
from health.models import DrillRun

WARNING_COLOUR, CRITICAL_COLOUR = "#b7791f", "#c53030"


def _require(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def _context(model_admin: admin.ModelAdmin, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {**model_admin.admin_site.each_context(request), "title": title, "opts": model_admin.model._meta,
            "app_label": model_admin.model._meta.app_label, **extra}


# --- System Health ------------------------------------------------------------------------------
def system_health(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> TemplateResponse:
    _require(request, "health.view_healthcheckrun")
    can_force = request.user.has_perm("health.force_breaker")
    context = _context(model_admin, request, "System health", **_live_context(request),
                       can_force=can_force, force_form=BreakerForceForm(), clear_form=BreakerClearForm(),
                       schedules=_schedules())
    return TemplateResponse(request, "admin/health/system_health.html", context)


def system_health_live(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> TemplateResponse:
    """The part of System Health that refreshes itself, as an HTML fragment."""
    _require(request, "health.view_healthcheckrun")
    return TemplateResponse(request, "admin/health/system_health_live.html", _live_context(request))


def _live_context(request: HttpRequest) -> dict[str, Any]:
    range_name = request.GET.get("range", "hour")
    if range_name not in selectors.HISTORY_RANGES:
        range_name = "hour"
    overview = selectors.console_overview()
    try:
        breaker = cards.breaker_state()
    except Exception as exc:  # noqa: BLE001 - a card says it could not read the breaker
        breaker = {"state": "unknown", "error": exc.__class__.__name__}
    history = selectors.history_series(range_name=range_name)
    thresholds = [Threshold(settings.ALERT_WARNING_THRESHOLD, f"warning {settings.ALERT_WARNING_THRESHOLD}%",
                            WARNING_COLOUR),
                  Threshold(settings.ALERT_CRITICAL_THRESHOLD, f"critical {settings.ALERT_CRITICAL_THRESHOLD}%",
                            CRITICAL_COLOUR)]
    label = "last hour" if range_name == "hour" else "last day"
    return {
        "overview": overview,
        "cards": cards.component_cards(run=overview.last_run, breaker=breaker),
        "breaker": breaker,
        "fleet": selectors.fleet_overview(),
        "utilisation_chart": line_chart(series=history["pools"], start=history["start"], end=history["end"],
                                        unit="%", y_max=100.0, thresholds=thresholds,
                                        title=f"Pool utilisation, {label} (highest per {history['bucket']} s)"),
        "latency_chart": line_chart(series=history["latency"], start=history["start"], end=history["end"],
                                    unit=" ms", title=f"Gateway probe latency, {label} "
                                                      f"(mean per {history['bucket']} s)"),
        "range": range_name,
        # Each model's data only for those allowed to view it.
        "recent_alerts": selectors.recent_alerts() if request.user.has_perm("health.view_alert") else [],
        "unknown_payments": selectors.unknown_payments() if request.user.has_perm("payments.view_payment") else [],
        "warning_threshold": settings.ALERT_WARNING_THRESHOLD,
        "critical_threshold": settings.ALERT_CRITICAL_THRESHOLD,
        "interval": settings.HEALTH_CHECK_INTERVAL,
        "rendered_at": timezone.now(),
        "can_view_alerts": request.user.has_perm("health.view_alert"),
        "can_view_payments": request.user.has_perm("payments.view_payment"),
        # Payment volumes and decline codes are payment data: only for those who may view payments.
        "payments": _payments_context(range_name, label) if request.user.has_perm("payments.view_payment") else None,
    }


def _payments_context(range_name: str, label: str) -> dict[str, Any]:
    span, bucket = selectors.HISTORY_RANGES[range_name]
    overview = payments_overview(span=span, bucket=bucket)
    timeout_ms = overview.read_timeout_ms or settings.PAYMENT_TIMEOUT * 1000
    # The read timeout is always on the chart: the point is to see latency creep towards it.
    thresholds = [
        Threshold(timeout_ms * settings.ALERT_LATENCY_WARNING / 100, f"warning {settings.ALERT_LATENCY_WARNING}%",
                  WARNING_COLOUR),
        Threshold(timeout_ms * settings.ALERT_LATENCY_ERROR / 100, f"error {settings.ALERT_LATENCY_ERROR}%",
                  CRITICAL_COLOUR),
        Threshold(timeout_ms, f"read timeout {timeout_ms:,.0f} ms", CRITICAL_COLOUR),
    ]
    return {
        "overview": overview,
        "label": label,
        "latency_chart": line_chart(series=overview.latency, start=overview.start, end=overview.end, unit=" ms",
                                    y_max=timeout_ms * 1.1, thresholds=thresholds,
                                    title=f"Gateway latency of payments, {label} (highest per {overview.bucket} s)"),
        "rates_chart": line_chart(series=overview.rates, start=overview.start, end=overview.end, unit="%",
                                  y_max=100.0, title=f"Success and timeout rates, {label} (per {overview.bucket} s)"),
    }


def _schedules() -> list[dict[str, Any]]:
    """The beat schedule as configured (settings, changed by a deploy): ops see what runs when."""
    rows = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        every = f"every {schedule:g} s" if isinstance(schedule, (int, float)) else str(schedule)
        rows.append({"name": name, "task": entry["task"], "every": every})
    return rows


@require_POST
def breaker_override(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    _require(request, "health.force_breaker")
    target = reverse("admin:health_system") + "#breaker-override"
    if request.POST.get("op") == "clear":
        form = BreakerClearForm(request.POST)
        if form.is_valid():
            services.breaker_force_clear(by=acting_user(request), reason=form.cleaned_data["reason"])
            messages.success(request, "Breaker override ended; the breaker follows the failure rate again.")
        else:
            messages.error(request, "Say why the override ends.")
        return HttpResponseRedirect(target)
    force = BreakerForceForm(request.POST)
    if not force.is_valid():
        messages.error(request, "Breaker not forced: " + "; ".join(
            f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in force.errors.items()))
        return HttpResponseRedirect(target)
    try:
        until = services.breaker_force(by=acting_user(request), state=force.cleaned_data["state"],
                                       reason=force.cleaned_data["reason"], minutes=force.cleaned_data["minutes"])
    except Exception as exc:  # noqa: BLE001 - e.g. Redis away: the fleet cannot be told
        messages.error(request, f"Breaker not forced: {exc}")
        return HttpResponseRedirect(target)
    messages.success(request, f"Breaker forced {force.cleaned_data['state']} for the whole fleet until "
                              f"{until:%H:%M} UTC.")
    return HttpResponseRedirect(target)


# --- Runbook ------------------------------------------------------------------------------------
def runbook(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> TemplateResponse:
    _require(request, "health.view_alert")
    book = load_runbook()
    return TemplateResponse(request, "admin/health/runbook.html",
                            _context(model_admin, request, "Runbook", runbook=book))


# --- Drills ---------------------------------------------------------------------------------------
def drill_start(request: HttpRequest, *, model_admin: admin.ModelAdmin) -> HttpResponse:
    """The add page of drill runs: one form per drill; POST starts one."""
    _require(request, "health.add_drillrun")
    forms = {kind: form_class() for kind, form_class in DRILL_FORMS.items()}
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        if kind not in DRILL_FORMS:
            messages.error(request, "Unknown drill.")
        else:
            form = forms[kind] = DRILL_FORMS[kind](request.POST)
            if form.is_valid():
                params = dict(form.cleaned_data)
                try:
                    run = services.drill_start(kind=kind, params=params, by=acting_user(request))
                except services.DrillBusy as busy:
                    messages.error(request, "That drill is already running: it cannot be started twice at once.")
                    if busy.run is not None:
                        return HttpResponseRedirect(reverse("admin:health_drillrun_change", args=[busy.run.pk]))
                else:
                    if run.status == "refused":
                        messages.error(request, f"{run.get_kind_display()} {run.error}")
                    else:
                        messages.success(request, f"{run.get_kind_display()} started.")
                    return HttpResponseRedirect(reverse("admin:health_drillrun_change", args=[run.pk]))
    drills_shown = [{"kind": kind, "label": DRILL_FORMS[kind].kind.label, "form": form,
                     "active": selectors.drill_active(kind=kind)} for kind, form in forms.items()]
    return TemplateResponse(request, "admin/health/drillrun/start.html",
                            _context(model_admin, request, "Run a drill", drills=drills_shown,
                                     recent=selectors.drill_runs_recent()))


def drill_detail(request: HttpRequest, run: DrillRun, *, model_admin: admin.ModelAdmin) -> TemplateResponse:
    _require(request, "health.view_drillrun")
    return TemplateResponse(request, "admin/health/drillrun/detail.html",
                            _context(model_admin, request, f"{run.get_kind_display()} #{run.pk}", run=run,
                                     **_drill_context(run)))


def drill_live(request: HttpRequest, run_id: int, *, model_admin: admin.ModelAdmin) -> TemplateResponse:
    _require(request, "health.view_drillrun")
    run = DrillRun.objects.select_related("started_by").filter(pk=run_id).first()
    if run is None:
        raise PermissionDenied
    return TemplateResponse(request, "admin/health/drillrun/live.html", {"run": run, **_drill_context(run)})


def _drill_context(run: DrillRun) -> dict[str, Any]:
    progress = run.progress if not run.is_active else (selectors.drill_progress(run.pk) or {})
    result = run.result or {}
    chart = None
    if run.kind == "db_pool" and result.get("queries"):
        chart = timeline_chart(title="Each query: waiting for a connection, then running", spans=[
            Span(f"query {q['index'] + 1}", q["asked_s"], q["got_s"], q["end_s"], bool(q["error"]))
            for q in sorted(result["queries"], key=lambda q: (q["got_s"], q["asked_s"]))])
    elif run.kind == "http_pool" and result.get("requests"):
        chart = timeline_chart(title="Each request, round by round (waits and work together)", spans=[
            Span(f"r{r['round']} #{r['index'] + 1}", r["asked_s"], r["asked_s"], r["end_s"], bool(r["error"]))
            for r in result["requests"]])
    pct = 0
    if progress.get("total"):
        pct = round(100 * progress.get("done", 0) / progress["total"])
    if not run.is_active:
        pct = 100
    duration = ((run.finished_at - run.started_at).total_seconds()
                if run.started_at and run.finished_at else None)
    return {"progress": progress, "progress_pct": pct, "result": result, "chart": chart, "duration_s": duration,
            "queued_for": (timezone.now() - run.created_at).total_seconds() if run.status == "queued" else None}
