"""The audit trail: every admin log entry (who did what to which object, when, and why), read
only, for ops_admin (admin.view_logentry); and the breaker overrides those entries name."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from health.models import BreakerOverride


class AuthorFilter(admin.SimpleListFilter):
    """Only the people who have entries: the user table may hold many more."""

    title = "user"
    parameter_name = "user"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        authors = get_user_model().objects.filter(
            pk__in=LogEntry.objects.order_by().values("user_id").distinct()).order_by("username")
        return [(str(user.pk), user.get_username()) for user in authors]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LogEntry]) -> QuerySet[LogEntry]:
        value = self.value()
        return queryset.filter(user_id=value) if value else queryset


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LogEntry)
class AuditTrailAdmin(ReadOnly):
    list_display = ("action_time", "user", "action", "object_link", "content_type", "message")
    list_filter = (AuthorFilter, "action_flag", "content_type")
    search_fields = ("object_repr", "change_message")
    ordering = ("-action_time",)
    list_select_related = ("user", "content_type")
    date_hierarchy = "action_time"
    fields = ("action_time", "user", "action_flag", "content_type", "object_id", "object_repr", "message")
    readonly_fields = fields

    @admin.display(description="action", ordering="action_flag")
    def action(self, entry: LogEntry) -> str:
        return entry.get_action_flag_display()

    @admin.display(description="object", ordering="object_repr")
    def object_link(self, entry: LogEntry) -> str:
        if entry.content_type_id is None or entry.is_deletion():
            return entry.object_repr
        try:
            content_type = ContentType.objects.get_for_id(entry.content_type_id)  # cached per process
            url = reverse(f"admin:{content_type.app_label}_{content_type.model}_change",
                          args=[entry.object_id])
        except NoReverseMatch:
            return entry.object_repr
        return format_html('<a href="{}">{}</a>', url, entry.object_repr)

    @admin.display(description="what and why")
    def message(self, entry: LogEntry) -> str:
        return entry.get_change_message()


@admin.register(BreakerOverride)
class BreakerOverrideAdmin(ReadOnly):
    list_display = ("created_at", "state", "until", "forced_by", "reason", "ended_at", "ended_by", "end_reason")
    list_filter = ("state",)
    ordering = ("-created_at",)
    list_select_related = ("forced_by", "ended_by")
    readonly_fields = ("state", "reason", "until", "forced_by", "created_at", "ended_at", "ended_by", "end_reason")
