"""Database: every process's pool (published to Redis) and the server's own connection count."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from health.checks.base import Check, Problem, Reading, ServiceUnavailable, fleet_view, percent


class DatabaseCheck(Check):
    name = "database"

    def measure(self) -> Reading:
        from health.selectors import server_connection_stats

        docs, shared = fleet_view()
        pools = [_pool(doc) for doc in docs if doc.get("db")]
        figures = _fleet_figures(pools, shared=shared)
        started = time.perf_counter()
        try:
            server = server_connection_stats()
        except DatabaseError as exc:
            raise ServiceUnavailable("database unreachable", figures=figures) from exc
        figures["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        capacity = server["max_connections"] - settings.DB_CONNECTION_RESERVE
        # What the fleet may open: every pool, and the answers lanes beside them.
        may_open = figures["max"] + figures["answers_max"]
        # Behind PgBouncer the pools' connections are PgBouncer's clients: the server sees only
        # PgBouncer's own pool (its default_pool_size), so the pools' sum is no demand on the server.
        behind_pgbouncer = settings.DB_PGBOUNCER
        figures["server"] = {**server, "reserve": settings.DB_CONNECTION_RESERVE, "capacity": capacity,
                             "pool_max_total": may_open, "fits": behind_pgbouncer or may_open <= capacity,
                             "behind_pgbouncer": behind_pgbouncer}
        reading = Reading(figures=figures, message=_message(figures))
        reading.utilisation["pool_utilisation"] = figures["utilisation_pct"]
        server_pct = percent(server["total"], server["max_connections"])
        if server_pct is not None:
            reading.utilisation["server_connections"] = server_pct
        timeouts = [p for p in pools if p["acquire_errors"] or p["exhausted_503"]]
        if timeouts:
            count = sum(p["acquire_errors"] + p["exhausted_503"] for p in timeouts)
            where = ", ".join(p["process"] for p in timeouts[:5])
            reading.problems.append(Problem(
                "pool_exhausted", "error",
                f"{count} database connection requests timed out in the last {docs[0]['window_s']:.0f} s ({where})",
            ))
        if figures["leaks"]:
            longest = figures["leaks"][0]
            reading.problems.append(Problem(
                "connection_leak", "warning",
                f"{len(figures['leaks'])} database connection(s) lent out longer than {settings.DB_LEAK_THRESHOLD:.0f} s; "
                f"longest {longest['held_s']:.0f} s, taken by {longest['where']} ({longest['process']})",
            ))
        if may_open > capacity and not behind_pgbouncer:
            reading.problems.append(Problem(
                "pool_oversubscribed", "warning",
                f"pools may open {may_open} connections; the server has {capacity} "
                f"({server['max_connections']} max_connections less a reserve of {settings.DB_CONNECTION_RESERVE})",
            ))
        return reading


def _pool(doc: dict[str, Any]) -> dict[str, Any]:
    db, recent = doc["db"], doc["db"].get("recent", {})
    answers = doc.get("db_answers") or {}
    return {
        "process": doc["process"], "role": doc.get("role", ""),
        "in_use": db["in_use"], "idle": db["idle"], "size": db["size"], "min": db["min"], "max": db["max"],
        "waiting": db["waiting"], "utilisation_pct": percent(db["in_use"], db["max"]),
        "requests": recent.get("requests_num", 0), "queued": recent.get("requests_queued", 0),
        "wait_ms": recent.get("requests_wait_ms", 0),
        "acquire_errors": int(recent.get("requests_errors", 0))
        + int(answers.get("recent", {}).get("requests_errors", 0)),
        "answers_max": answers.get("max", 0), "answers_in_use": answers.get("in_use", 0),
        "exhausted_503": int(doc.get("db_failures", {}).get("recent", {}).get("db_pool_exhausted", 0)),
        "unavailable_503": int(doc.get("db_failures", {}).get("recent", {}).get("db_unavailable", 0)),
        "leaks": db.get("leaks") or [],
    }


def _fleet_figures(pools: list[dict[str, Any]], *, shared: bool) -> dict[str, Any]:
    worst = max(pools, key=lambda p: p["utilisation_pct"] or 0, default=None)
    total = {key: sum(p[key] for p in pools) for key in ("in_use", "idle", "max", "waiting", "requests", "queued",
                                                           "wait_ms", "acquire_errors", "exhausted_503",
                                                           "unavailable_503", "answers_max", "answers_in_use")}
    return {
        **total,
        "errors": total["acquire_errors"],
        # The fullest pool decides: each process can only use its own.
        "utilisation_pct": worst["utilisation_pct"] if worst else None,
        "fullest": worst["process"] if worst else None,
        "processes": len(pools),
        "shared": shared,
        "pools": pools,
        # Every connection held past DB_LEAK_THRESHOLD in the fleet, longest first.
        "leaks": sorted(({**leak, "process": p["process"]} for p in pools for leak in p["leaks"]),
                        key=lambda leak: -leak["held_s"]),
    }


def _message(figures: dict[str, Any]) -> str:
    server = figures["server"]
    return (f"{figures['in_use']} of {figures['max']} pooled connections in use across {figures['processes']} "
            f"processes (fullest {figures['utilisation_pct'] or 0:.0f}%); server {server['total']} of "
            f"{server['max_connections']}")
