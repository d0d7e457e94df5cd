"""The console's alerts: by severity, worked through acknowledge, resolve and silence actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from health.admin.display import AlertStateFilter, ComponentFilter, badge
from health.console import selectors as console_selectors
from health.console import services as console_services
from health.console import views
from health.console.charts import Series, line_chart
from health.console.forms import AlertNoteForm, AlertSilenceForm
from health.console.runbook import anchor_for, load_runbook
from health.console.users import acting_user
from health.models import Alert, ComponentSnapshot
from payments.money import money_format


# --- Alerts -----------------------------------------------------------------------------------------
@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("severity_badge", "component", "condition", "status_badge", "short_message", "first_seen_at",
                    "last_seen_at", "occurrences", "age", "impact", "acknowledged_by")
    list_display_links = ("condition",)
    list_filter = ("severity", AlertStateFilter, ComponentFilter, ("last_seen", admin.DateFieldListFilter))
    search_fields = ("=component", "=condition", "message")
    search_help_text = "A component or condition (exact), or a piece of an alert's message."
    ordering = ("-severity_rank", "-last_seen")  # worst first, then the most recent
    list_select_related = ("acknowledged_by",)
    list_per_page = 50
    show_full_result_count = False
    actions = ("acknowledge", "resolve", "silence")
    fieldsets = (
        (None, {"fields": ("severity", "status", "component", "condition", "message")}),
        ("Seen", {"fields": ("first_seen", "last_seen", "occurrences", "streak", "reopened",
                             "impact")}),
        ("Handled", {"fields": ("acknowledged_by", "acknowledged_at", "acknowledgement_note", "resolved_by",
                                "resolved_at", "resolution_note")}),
    )
    readonly_fields = [field.name for field in Alert._meta.fields] + ["impact"]

    @admin.display(description="payments affected")
    def impact(self, obj: Alert) -> str:
        """The payments its component left unfinished while it was open, with their amounts."""
        if obj.payments_in_flight is None:
            return "—"
        amounts = ", ".join(money_format(amount=int(amount), currency=currency)
                            for currency, amount in sorted((obj.amount_affected or {}).items()))
        return f"{obj.payments_in_flight}" + (f" ({amounts})" if amounts else "")

    @admin.display(description="severity", ordering="-severity_rank")
    def severity_badge(self, obj: Alert) -> str:
        return badge("severity", obj.severity)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Alert) -> str:
        return badge("alert", obj.status)

    @admin.display(description="message")
    def short_message(self, obj: Alert) -> str:
        text = obj.message if len(obj.message) <= 90 else obj.message[:89] + "…"
        return format_html('<span title="{}">{}</span>', obj.message, text)

    @admin.display(description="first seen (UTC)", ordering="first_seen")
    def first_seen_at(self, obj: Alert) -> str:
        return _when(obj.first_seen)

    @admin.display(description="last seen (UTC)", ordering="last_seen")
    def last_seen_at(self, obj: Alert) -> str:
        return _when(obj.last_seen)

    @admin.display(description="age", ordering="first_seen")
    def age(self, obj: Alert) -> str:
        end = obj.resolved_at or timezone.now()
        return timesince(obj.first_seen, end, depth=1)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Alert],
                           search_term: str) -> tuple[QuerySet[Alert], bool]:
        """The whole term at once: one pass over the messages, not one per word (100k alerts and more)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(component=term) | Q(condition=term) | Q(message__icontains=term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts come from checks

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the history stays

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("runbook/", wrap(lambda r: views.runbook(r, model_admin=self)), name="health_runbook"),
                *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "title": "Alerts, worst first",
                                                 "runbook_url": reverse("admin:health_runbook")})

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        alert = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if alert is not None and self.has_view_or_change_permission(request, alert):
            book = load_runbook()
            anchor = anchor_for(component=alert.component, condition=alert.condition, anchors=book.anchors)
            around = console_selectors.snapshots_around(alert=alert)
            extra.update(
                title=f"Alert: {alert.severity} {alert.component}/{alert.condition}", subtitle=None,
                history=console_selectors.alert_history(alert=alert),
                snapshots_first=around["first"], snapshots_last=around["last"],
                snapshot_chart=_alert_chart(alert, around["first"] + around["last"]),
                runbook_url=reverse("admin:health_runbook") + (f"#{anchor}" if anchor else ""),
                runbook_title=book.titles.get(anchor or "", "Runbook"),
                can_act=self.has_change_permission(request, alert),
                can_silence=request.user.has_perm("health.add_silence"),
                show_save=False, show_save_and_continue=False, show_save_and_add_another=False,
                show_delete=False,
            )
        return super().change_view(request, object_id, form_url, extra)

    # Each action first shows a page asking for the note (why), then acts and reports.
    @admin.action(description="Acknowledge selected alerts…", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = AlertNoteForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            report = console_services.alerts_acknowledge(alerts=list(queryset), by=acting_user(request),
                                                         note=form.cleaned_data["note"])
            self._report(request, "Acknowledged", report)
            return None
        return self._confirm(request, queryset, form, "acknowledge", "Acknowledge alerts",
                             "Acknowledging says you are on it: the alert stays active until its condition "
                             "clears or it is resolved.")

    @admin.action(description="Resolve selected alerts…", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = AlertNoteForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            report = console_services.alerts_resolve(alerts=list(queryset), by=acting_user(request),
                                                     note=form.cleaned_data["note"])
            self._report(request, "Resolved", report)
            return None
        return self._confirm(request, queryset, form, "resolve", "Resolve alerts",
                             "Resolving closes the alert now; if the condition is still present the next "
                             "health check raises it again (reopened).")

    @admin.action(description="Silence selected alerts for a while…", permissions=["silence"])
    def silence(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        form = AlertSilenceForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            report = console_services.alerts_silence(alerts=list(queryset), by=acting_user(request),
                                                     reason=form.cleaned_data["reason"],
                                                     duration=form.silence_for())
            until = report.silences[0].ends_at if report.silences else None
            self.message_user(request, (
                f"Silenced {len(report.silences)} condition(s) until {until:%Y-%m-%d %H:%M} UTC: "
                + ", ".join(f"{s.component}/{s.condition}" for s in report.silences)) if until else
                "Nothing silenced.", messages.SUCCESS)
            return None
        return self._confirm(request, queryset, form, "silence", "Silence alerts",
                             "A silence stops notifications (e-mail, webhook) for these components and "
                             "conditions; the alerts are still recorded and shown here.")

    def has_silence_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("health.add_silence")

    def _confirm(self, request: HttpRequest, queryset: QuerySet[Alert], form: Any, action: str, title: str,
                 explanation: str) -> TemplateResponse:
        alerts = list(queryset.select_related("acknowledged_by")[:100])
        context = {
            **self.admin_site.each_context(request), "title": title, "opts": self.model._meta,
            "form": form, "action": action, "alerts": alerts, "count": queryset.count(),
            "explanation": explanation, "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
        }
        return TemplateResponse(request, "admin/health/alert/action_confirm.html", context)

    def _report(self, request: HttpRequest, verb: str, report: console_services.ActionReport) -> None:
        done = ", ".join(f"{a.severity} {a.component}/{a.condition}" for a in report.done[:10])
        text = f"{verb} {len(report.done)} alert(s)" + (f": {done}" if done else "") + "."
        if report.skipped:
            text += " Skipped " + ", ".join(f"{a.component}/{a.condition} ({why})" for a, why in report.skipped[:10])
            text += "."
        self.message_user(request, text, messages.SUCCESS if report.done else messages.WARNING)


def _when(at: Any) -> str:
    """Compact UTC time: the hour alone today, the date too before."""
    now = timezone.now()
    return f"{at:%H:%M:%S}" if at.date() == now.date() else f"{at:%Y-%m-%d %H:%M}"


def _alert_chart(alert: Alert, snapshots: list[ComponentSnapshot]) -> Any:
    if not snapshots:
        return None
    points = sorted({s.checked_at: s for s in snapshots}.items())
    has_util = any(s.utilisation_pct is not None for _, s in points)
    value = (lambda s: s.utilisation_pct) if has_util else (lambda s: s.latency_ms)
    unit = "%" if has_util else " ms"
    return line_chart(series=[Series(alert.component, [(at, value(s)) for at, s in points])],
                      start=points[0][0], end=points[-1][0], unit=unit, y_max=100.0 if has_util else None,
                      title=f"{alert.component} {'utilisation' if has_util else 'latency'} around this alert",
                      height=180)
