"""The console's drills: started from their forms, run by a worker, watched live."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from health.admin.display import badge
from health.console import views
from health.models import DrillRun


# --- Drills ------------------------------------------------------------------------------------------
@admin.register(DrillRun)
class DrillRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status_badge", "started_by", "created_at", "duration", "summary")
    list_display_links = ("id", "kind")
    list_filter = ("kind", "status")
    list_select_related = ("started_by",)
    ordering = ("-created_at",)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: DrillRun) -> str:
        return badge("drill", obj.status)

    @admin.display(description="duration")
    def duration(self, obj: DrillRun) -> str:
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"
        return "–"

    @admin.display(description="result")
    def summary(self, obj: DrillRun) -> str:
        r = obj.result or {}
        if obj.error:
            return obj.error[:120]
        if obj.kind == "db_pool" and r:
            return (f"{r['concurrency']} queries / pool {r['pool_max']}: {r['queued']} queued, "
                    f"max wait {r['wait_ms']['max']:.0f} ms, {r['failed']} failed")
        if obj.kind == "http_pool" and r:
            return (f"{r['concurrency']}×{r['rounds']} requests: {r['pool']['connections_opened']:.0f} connections "
                    f"opened, {r['connections_reused']} reused, {r['failed']} failed")
        if obj.kind == "payment_timeout" and r:
            return f"after timeouts: {r['after_submit']['status']}, finally {r['final_status']}"
        if obj.kind == "log_test" and r:
            delivered = sum(1 for h in r["handlers"] if h["delivered"])
            return f"{delivered} of {len(r['handlers'])} handlers; {r['cloudwatch']['detail']}"
        return ""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a drill's record is what it found: nobody edits it

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("<int:run_id>/live/", wrap(lambda r, run_id: views.drill_live(r, run_id, model_admin=self)),
                     name="health_drillrun_live"),
                *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        return views.drill_start(request, model_admin=self)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        run = self.get_object(request, unquote(object_id))
        if run is None or not self.has_view_permission(request, run):
            return super().change_view(request, object_id, form_url, extra_context)  # 404 or 403, as the admin does
        return views.drill_detail(request, run, model_admin=self)
