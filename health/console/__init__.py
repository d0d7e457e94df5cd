"""The operations console: System Health, alert work, drills and the runbook, inside the Django admin."""
