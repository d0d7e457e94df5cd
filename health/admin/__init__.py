"""The operations console's health pages: alerts worked by severity, runs and snapshots,
silences and notifications, drills. Django's autodiscovery imports this package alone, so it
imports each module to register its admin classes."""

from health.admin import alerts, drills, runs, silences  # noqa: F401 - registration
