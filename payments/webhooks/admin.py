"""Console pages for gateway events: read-only, failed ones first to hand, and "process again"
for those with the permission (ops_operator)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from payments.models import GatewayEvent
from payments.webhooks import services
from payments.webhooks.refusals import refusals_read
from payments.webhooks.selectors import gateway_event_failed_count


@admin.register(GatewayEvent)
class GatewayEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "object_id", "status", "action", "error_short", "attempts", "received_at",
                    "processed_at")
    list_filter = ("status", "type", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=event_id", "=object_id")
    ordering = ("-received_at",)
    show_full_result_count = False
    actions = ("process_again",)
    readonly_fields = [f.name for f in GatewayEvent._meta.fields]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):  # type: ignore[no-untyped-def]
        refused, fleet = refusals_read()
        context = {"failed_count": gateway_event_failed_count(), "refused": sorted(refused.items()),
                   "refused_fleet": fleet}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    @admin.display(description="Error")
    def error_short(self, obj: GatewayEvent) -> str:
        return obj.error[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
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
