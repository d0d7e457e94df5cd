"""ops_admin reads the audit trail (the admin's LogEntry) and the breaker overrides it names."""

from django.db import migrations

GRANTS = [("admin", "view_logentry"), ("health", "view_breakeroverride")]


def _ensure_permissions(apps) -> None:  # type: ignore[no-untyped-def]
    # Permissions are normally created after all migrations (post_migrate); the grant needs them now.
    from django.contrib.auth.management import create_permissions

    for label in ("admin", "health"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None


def grant(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    _ensure_permissions(apps)
    group, _ = Group.objects.get_or_create(name="ops_admin")
    group.permissions.add(*[Permission.objects.get(content_type__app_label=app, codename=codename)
                            for app, codename in GRANTS])


def revoke(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    Permission = apps.get_model("auth", "Permission")
    group = apps.get_model("auth", "Group").objects.filter(name="ops_admin").first()
    if group is not None:
        group.permissions.remove(*Permission.objects.filter(
            content_type__app_label__in=[app for app, _ in GRANTS], codename__in=[c for _, c in GRANTS]))


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0006_breakeroverride"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
