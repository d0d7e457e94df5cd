"""The console's silences and the notifications sent for alerts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from health.console import services as console_services
from health.console.users import acting_user
from health.models import AlertNotification, Silence
from health.services.alerts import alert_silence, alert_silence_end


# --- Silences and notifications -----------------------------------------------------------------------
@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = ("component", "condition", "starts_at", "ends_at", "active", "reason", "created_by")
    list_select_related = ("created_by",)
    ordering = ("-ends_at",)
    fields = ("component", "condition", "starts_at", "ends_at", "reason")
    actions = ("end_now",)

    @admin.display(description="active", boolean=True)
    def active(self, obj: Silence) -> bool:
        now = timezone.now()
        return obj.starts_at <= now < obj.ends_at

    def save_model(self, request: HttpRequest, obj: Silence, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = alert_silence(by=acting_user(request), reason=obj.reason, ends_at=obj.ends_at,
                                component=obj.component, condition=obj.condition, starts_at=obj.starts_at)
        obj.pk = created.pk

    @admin.action(description="End the selected silences now", permissions=["change"])
    def end_now(self, request: HttpRequest, queryset: QuerySet[Silence]) -> None:
        ended = [alert_silence_end(silence=s, by=acting_user(request))
                 for s in queryset.filter(ends_at__gt=timezone.now())]
        for silence in ended:
            console_services.audit_log(by=acting_user(request), obj=silence, message="Ended early")
        self.message_user(request, f"Ended {len(ended)} silence(s).", messages.SUCCESS)


@admin.register(AlertNotification)
class AlertNotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "alert", "event", "severity", "email_sent_at", "webhook_sent_at", "attempts",
                    "last_error")
    list_filter = ("event", "severity")
    list_select_related = ("alert",)
    readonly_fields = [field.name for field in AlertNotification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
