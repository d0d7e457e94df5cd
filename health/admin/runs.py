"""The console's health runs and component snapshots (read-only history)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, path

from health.admin.display import ComponentFilter, badge
from health.console import views
from health.models import ComponentSnapshot, HealthCheckRun


# --- Health runs and System Health ----------------------------------------------------------------
@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(admin.ModelAdmin):
    list_display = ("tick", "status_badge", "duration_ms", "ran_on")
    list_filter = ("status",)
    ordering = ("-tick",)
    show_full_result_count = False  # millions of rows: no COUNT(*) per page
    readonly_fields = ("tick", "started_at", "finished_at", "duration_ms", "status", "ran_on")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: HealthCheckRun) -> str:
        return badge("status", obj.status)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("system/", wrap(lambda r: views.system_health(r, model_admin=self)), name="health_system"),
            path("system/live/", wrap(lambda r: views.system_health_live(r, model_admin=self)),
                 name="health_system_live"),
            path("system/breaker/", wrap(lambda r: views.breaker_override(r, model_admin=self)),
                 name="health_breaker"),
            *super().get_urls(),
        ]


@admin.register(ComponentSnapshot)
class ComponentSnapshotAdmin(admin.ModelAdmin):
    list_display = ("checked_at", "component", "status_badge", "utilisation_pct", "in_use", "maximum", "waiting",
                    "latency_ms", "errors", "message")
    list_filter = (ComponentFilter, "status")
    ordering = ("-checked_at",)
    raw_id_fields = ("run",)
    show_full_result_count = False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ComponentSnapshot) -> str:
        return badge("status", obj.status)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
