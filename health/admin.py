"""A minimal admin for the health models; the ops console builds on it later."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from health import services
from health.models import Alert, AlertNotification, ComponentSnapshot, HealthCheckRun, Silence


@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(admin.ModelAdmin):
    list_display = ("tick", "status", "duration_ms", "ran_on")
    list_filter = ("status",)
    ordering = ("-tick",)
    show_full_result_count = False  # millions of rows: no COUNT(*) per page
    readonly_fields = ("tick", "started_at", "finished_at", "duration_ms", "status", "ran_on")


@admin.register(ComponentSnapshot)
class ComponentSnapshotAdmin(admin.ModelAdmin):
    list_display = ("checked_at", "component", "status", "utilisation_pct", "in_use", "maximum", "waiting",
                    "latency_ms", "errors", "message")
    list_filter = ("component", "status")
    ordering = ("-checked_at",)
    raw_id_fields = ("run",)
    show_full_result_count = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("severity", "component", "condition", "status", "message", "occurrences", "first_seen",
                    "last_seen", "acknowledged_by", "resolved_at")
    list_filter = ("status", "severity", "component")
    search_fields = ("component", "condition", "message")
    ordering = ("-severity_rank", "-last_seen")
    list_select_related = ("acknowledged_by",)
    readonly_fields = [field.name for field in Alert._meta.fields]
    actions = ("acknowledge", "resolve")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # alerts come from checks

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.filter(status="open"):
            services.alert_acknowledge(alert=alert, by=request.user)
            done += 1
        self.message_user(request, f"{done} alerts acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.exclude(status="resolved"):
            services.alert_resolve(alert=alert, by=request.user, note="resolved in the console")
            done += 1
        self.message_user(request, f"{done} alerts resolved.", messages.SUCCESS)


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("component", "condition", "starts_at", "ends_at", "reason", "created_by")
    ordering = ("-ends_at",)
    fields = ("component", "condition", "starts_at", "ends_at", "reason")

    def save_model(self, request: HttpRequest, obj: Silence, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.alert_silence(by=request.user, reason=obj.reason, ends_at=obj.ends_at,
                                         component=obj.component, condition=obj.condition, starts_at=obj.starts_at)
        obj.pk = created.pk


@admin.register(AlertNotification)
class AlertNotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "alert", "event", "severity", "email_sent_at", "webhook_sent_at", "attempts",
                    "last_error")
    list_filter = ("event", "severity")
    list_select_related = ("alert",)
    readonly_fields = [field.name for field in AlertNotification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
