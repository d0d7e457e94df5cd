"""The console's groups and gateway events: every group sees them, ops_operator and ops_admin
may process one again."""

import importlib

from django.db import migrations

GROUPS_0003 = importlib.import_module("health.migrations.0003_console_groups")

ADDED: dict[str, list[tuple[str, str]]] = {
    "ops_viewer": [("payments", "view_gatewayevent")],
    "ops_operator": [("payments", "view_gatewayevent"), ("payments", "process_gatewayevent")],
    "ops_admin": [("payments", "view_gatewayevent"), ("payments", "process_gatewayevent")],
}


def add_permissions(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    GROUPS_0003._ensure_permissions(apps)
    for name, wanted in ADDED.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*[Permission.objects.get(content_type__app_label=app, codename=codename)
                                for app, codename in wanted])


def remove_permissions(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ADDED.items():
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.remove(*Permission.objects.filter(
                content_type__app_label="payments", codename__in=[codename for _, codename in wanted]))


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0004_notification_claim"),
        ("payments", "0004_gateway_event"),
    ]

    operations = [migrations.RunPython(add_permissions, remove_permissions)]
