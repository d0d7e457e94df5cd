"""The console's groups: ops_viewer reads, ops_operator works alerts, payments and drills,
ops_admin also forces the breaker and manages API keys. Re-running it resets their permissions."""

from django.db import migrations

VIEW = [
    ("health", "healthcheckrun"), ("health", "componentsnapshot"), ("health", "alert"), ("health", "silence"),
    ("health", "alertnotification"), ("health", "drillrun"),
    ("payments", "payment"), ("payments", "paymentattempt"), ("payments", "refund"),
]
GROUPS: dict[str, list[tuple[str, str]]] = {
    "ops_viewer": [(app, f"view_{model}") for app, model in VIEW],
}
GROUPS["ops_operator"] = GROUPS["ops_viewer"] + [
    ("health", "change_alert"),  # acknowledge, resolve
    ("health", "add_silence"), ("health", "change_silence"),  # silence for a chosen time, end a silence
    ("payments", "change_payment"),  # settle now
    ("health", "add_drillrun"),  # run drills
]
GROUPS["ops_admin"] = GROUPS["ops_operator"] + [
    ("health", "force_breaker"),
    ("health", "delete_silence"),
    ("payments", "view_apiclient"), ("payments", "add_apiclient"), ("payments", "change_apiclient"),
]


def _ensure_permissions(apps) -> None:  # type: ignore[no-untyped-def]
    # Permissions are normally created after all migrations (post_migrate); these groups need them now.
    from django.contrib.auth.management import create_permissions

    for label in ("health", "payments"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None


def create_groups(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    _ensure_permissions(apps)
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = [Permission.objects.get(content_type__app_label=app, codename=codename)
                       for app, codename in wanted]
        group.permissions.set(permissions)


def remove_groups(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0002_drillrun"),
        ("payments", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
