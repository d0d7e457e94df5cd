"""Logging: every process's CloudWatch handler backlog, drops and errors."""

from __future__ import annotations

from typing import Any

from health.checks.base import Check, Problem, Reading, fleet_view, percent


class LoggingCheck(Check):
    name = "logging"

    def measure(self) -> Reading:
        docs, _ = fleet_view()
        handlers = [(doc["process"], doc["logging"]) for doc in docs if doc.get("logging")]
        if not handlers:
            return Reading(message="cloudwatch off", figures={"cloudwatch": False})
        recent = [stats.get("recent", {}) for _, stats in handlers]
        queued = sum(stats.get("queued") or 0 for _, stats in handlers)
        capacity = sum(stats.get("capacity") or 0 for _, stats in handlers)
        figures: dict[str, Any] = {
            "cloudwatch": True, "processes": len(handlers), "in_use": queued, "max": capacity,
            "utilisation_pct": percent(queued, capacity),
            "sent": sum(int(r.get("sent", 0)) for r in recent),
            "dropped": sum(int(r.get("dropped", 0)) for r in recent),
            "errors": sum(int(r.get("errors", 0)) + int(r.get("failed", 0)) for r in recent),
            "unavailable": sorted(p for p, stats in handlers if stats.get("state") == "unavailable"),
        }
        reading = Reading(figures=figures, message=(
            f"{queued} records queued in {len(handlers)} processes; {figures['sent']} sent, "
            f"{figures['dropped']} dropped, {figures['errors']} errors recently"))
        if capacity:
            reading.utilisation["log_queue"] = figures["utilisation_pct"]
        if figures["unavailable"]:
            reading.problems.append(Problem("cloudwatch_unavailable", "error",
                                            f"CloudWatch handler could not start in {', '.join(figures['unavailable'])}"))
        if figures["dropped"]:
            reading.problems.append(Problem("logs_dropped", "error",
                                            f"{figures['dropped']} log records dropped recently"))
        elif figures["errors"]:
            reading.problems.append(Problem("cloudwatch_errors", "warning",
                                            f"{figures['errors']} CloudWatch delivery errors recently"))
        return reading
