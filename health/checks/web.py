"""Web: every gunicorn worker's threads, the pool no other check sees.

A gthread worker serves `threads` requests at once and queues the rest where nothing else
looks (config/queueing.py); a request that waited there long is slow for a reason the
database and HTTP pools do not show.
"""

from __future__ import annotations

from typing import Any

from config.queueing import QUEUED_AFTER
from health.checks.base import Check, Problem, Reading, fleet_view, percent


class WebThreadsCheck(Check):
    name = "web"

    def measure(self) -> Reading:
        docs, _ = fleet_view()
        workers = [(doc["process"], doc["web"]) for doc in docs if doc.get("web")]
        if not workers:
            return Reading(message="no web worker has published yet", figures={"processes": 0})
        recent = [stats.get("recent", {}) for _, stats in workers]
        fullest_process, fullest = max(workers, key=lambda w: percent(w[1]["busy"], w[1]["threads"]) or 0)
        requests = sum(int(r.get("requests", 0)) for r in recent)
        queued = sum(int(r.get("queued", 0)) for r in recent)
        shed = sum(int(r.get("shed", 0)) for r in recent)
        figures: dict[str, Any] = {
            "processes": len(workers),
            "in_use": sum(stats["busy"] for _, stats in workers),
            "max": sum(stats["threads"] for _, stats in workers),
            "waiting": sum(stats["waiting"] for _, stats in workers),
            "utilisation_pct": percent(fullest["busy"], fullest["threads"]),
            "fullest": fullest_process,
            "requests": requests,
            "queued": queued,
            "shed": shed,  # payment POSTs answered 503 queue_timeout, unstarted
            "wait_ms": round(sum(float(r.get("wait_ms_total", 0)) for r in recent), 1),
            "max_wait_ms": max(float(stats.get("max_wait_ms") or 0) for _, stats in workers),
        }
        reading = Reading(figures=figures, message=(
            f"{figures['in_use']} of {figures['max']} threads busy in {len(workers)} workers, "
            f"{figures['waiting']} requests waiting; {requests} requests recently, {queued} waited for a thread"))
        reading.utilisation["thread_utilisation"] = figures["utilisation_pct"]
        if queued:
            reading.problems.append(Problem(
                "requests_queued", "warning",
                f"{queued} of {requests} requests waited more than {QUEUED_AFTER * 1000:.0f} ms for a gunicorn "
                f"thread recently (longest {figures['max_wait_ms']:.0f} ms), {shed} of them refused unstarted "
                f"(503 queue_timeout): add threads or workers",
            ))
        return reading
