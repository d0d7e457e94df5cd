"""Console pages for gateway events: read-only, failed ones first to hand, and "process again"
for those with the permission (ops_operator)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from payments.models import GatewayEvent
from payments.webhooks import services
from payments.webhooks.refusals import refusals_read
from payments.webhooks.selectors import gateway_event_failed_count, gateway_event_types_seen


class EventTypeFilter(admin.SimpleListFilter):
    """Types seen in the last 30 days: a DISTINCT over every event ever received would read the
    whole table (several events per payment) on each page of the list."""

    title = "type"
    parameter_name = "type__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(t, t) for t in gateway_event_types_seen(since=timezone.now() - timedelta(days=30))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[GatewayEvent]) -> QuerySet[GatewayEvent]:
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(GatewayEvent)
class GatewayEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "object_id", "status", "action", "error_short", "attempts", "received_at",
                    "processed_at")
    list_filter = ("status", EventTypeFilter, ("received_at", admin.DateFieldListFilter))
    search_fields = ("=event_id", "=object_id")
    ordering = ("-received_at",)
    show_full_result_count = False
    actions = ("process_again",)
    readonly_fields = [f.name for f in GatewayEvent._meta.fields]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        refused, fleet = refusals_read()
        context = {"failed_count": gateway_event_failed_count(), "refused": sorted(refused.items()),
                   "refused_fleet": fleet}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    @admin.display(description="Error")
    def error_short(self, obj: GatewayEvent) -> str:
        return obj.error[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_process_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.process_gatewayevent")

    @admin.action(description="Process again (ask the gateway)", permissions=["process"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[GatewayEvent]) -> None:
        queued = services.gateway_event_requeue(pks=list(queryset.values_list("pk", flat=True)[:100]))
        for event in queued:
            # The admin's own log is the audit trail: who asked, when, and in which state it was.
            self.log_change(request, event, f"Process again (was {event.status})")
        left = queryset.count() - len(queued)
        self.message_user(request, f"{len(queued)} event(s) queued to be processed again"
                          + (f"; {left} left alone (processed or being processed)." if left > 0 else "."),
                          messages.SUCCESS)
