"""The operations console's health pages: alerts worked by severity, runs and snapshots,
silences and notifications, drills. Django's autodiscovery imports this package alone, so it
imports each module to register its admin classes, the audit trail's pages, and the drill task
(every worker imports the admin too, so every worker knows the task)."""

from health.admin import alerts, drills, runs, silences  # noqa: F401 - registration
from health.console import audit, tasks  # noqa: F401 - registration
