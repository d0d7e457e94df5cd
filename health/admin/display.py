"""What several console pages show alike: the severity badge and the list filters."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from health.console import selectors as console_selectors
from health.models import Alert


def badge(kind: str, value: str, text: str | None = None) -> str:
    """A coloured label that also says what it means in words, so colour is never the only signal."""
    return format_html('<span class="console-badge console-{}-{}">{}</span>', kind, value,
                       text or value.replace("_", " ").upper())


class AlertStateFilter(admin.SimpleListFilter):
    """Fixed choices (no SELECT DISTINCT over a large table), with "active" for open or acknowledged."""

    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active (open or acknowledged)"), ("open", "Open"), ("acknowledged", "Acknowledged"),
                ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "active":
            return queryset.filter(status__in=["open", "acknowledged"])
        if self.value() in ("open", "acknowledged", "resolved"):
            return queryset.filter(status=self.value())
        return queryset


class ComponentFilter(admin.SimpleListFilter):
    """The components a health run measures, without reading them from the (large) table."""

    title = "component"
    parameter_name = "component"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in console_selectors.component_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(component=self.value()) if self.value() else queryset
