"""Redis: round-trip latency and memory (the broker, breaker state and fleet statistics live there)."""

from __future__ import annotations

import time

from redis.exceptions import RedisError

from config.redis import get_redis
from health.checks.base import Check, Problem, Reading, ServiceUnavailable, percent

SLOW_MS = 100.0  # a PING slower than this on a local network is a problem


class RedisCheck(Check):
    name = "redis"

    def measure(self) -> Reading:
        client = get_redis()
        try:
            started = time.perf_counter()
            client.ping()
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            info = client.info()
        except RedisError as exc:
            raise ServiceUnavailable(f"redis unreachable ({exc.__class__.__name__})") from exc
        used, limit = info.get("used_memory", 0), info.get("maxmemory", 0)
        reading = Reading(
            figures={
                "latency_ms": latency_ms, "used_memory": used, "maxmemory": limit,
                "utilisation_pct": percent(used, limit), "in_use": info.get("connected_clients"),
                "evicted_keys": info.get("evicted_keys"), "rejected_connections": info.get("rejected_connections"),
            },
            message=f"ping {latency_ms:.1f} ms, {used / 1048576:.1f} MiB used"
                    + (f" of {limit / 1048576:.0f} MiB" if limit else " (no maxmemory)"),
        )
        memory = percent(used, limit)
        if memory is not None:  # no maxmemory: nothing to run out of
            reading.utilisation["memory"] = memory
        if latency_ms > SLOW_MS:
            reading.problems.append(Problem("slow", "warning", f"redis ping took {latency_ms:.0f} ms"))
        return reading
