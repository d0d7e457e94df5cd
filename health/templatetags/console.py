"""Template tags of the console: the status panel the admin index shows above the app list."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from health.console.selectors import console_overview

register = template.Library()


@register.inclusion_tag("admin/health/includes/status_panel.html", takes_context=True)
def console_status_panel(context: template.Context) -> dict[str, Any]:
    user = context["request"].user
    can_view_alerts = user.has_perm("health.view_alert")
    can_view_health = user.has_perm("health.view_healthcheckrun")
    if not (can_view_alerts or can_view_health):
        return {"hidden": True}
    overview = console_overview()
    return {
        "overview": overview,
        "counts": list(overview.counts.items()),
        "alerts_url": reverse("admin:health_alert_changelist"),
        "can_view_alerts": can_view_alerts,
        "can_view_health": can_view_health,
    }
