"""What an interval's payment figures say is wrong, before payments fail outright: gateway
latency creeping towards the read timeout, timeouts, a success rate below the previous hour's,
and a decline code rising above its usual share."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from health.checks.base import Level, Problem

HOUR = 3600  # s of earlier intervals the success rate and decline codes are compared with


def latency_level(traffic: dict[str, Any]) -> Level | None:
    """The p95 of payment creations against the read timeout, once the interval had enough
    tries to mean something: slow calls are seen while they still succeed."""
    latency = traffic["latency"]
    if latency["p95_ms"] is None or latency["count"] < settings.ALERT_GATEWAY_MIN_CALLS:
        return None
    timeout_ms = latency["read_timeout_ms"]
    share = round(100.0 * latency["p95_ms"] / timeout_ms, 1)
    return Level(
        value=share, warning=settings.ALERT_LATENCY_WARNING, error=settings.ALERT_LATENCY_ERROR,
        message=(f"gateway p95 latency {latency['p95_ms']:.0f} ms{_over(traffic)} ({latency['count']} tries), "
                 f"{share:.0f}% of the {timeout_ms} ms read timeout (warning above "
                 f"{settings.ALERT_LATENCY_WARNING}%, error above {settings.ALERT_LATENCY_ERROR}%)"),
    )


def timeout_level(traffic: dict[str, Any]) -> Level | None:
    gateway = traffic["gateway"]
    if gateway["timeout_rate_pct"] is None or gateway["attempts"] < settings.ALERT_GATEWAY_MIN_CALLS:
        return None
    return Level(
        value=gateway["timeout_rate_pct"], warning=settings.ALERT_TIMEOUT_RATE_WARNING,
        error=settings.ALERT_TIMEOUT_RATE_ERROR,
        message=(f"{gateway['timeouts']} of {gateway['attempts']} gateway tries timed out{_over(traffic)} "
                 f"({gateway['timeout_rate_pct']:.1f}%; warning above {settings.ALERT_TIMEOUT_RATE_WARNING}%, "
                 f"error above {settings.ALERT_TIMEOUT_RATE_ERROR}%): their payments' outcomes are unknown "
                 "until settled"),
    )


def baseline_runs() -> int:
    return max(1, HOUR // settings.HEALTH_CHECK_INTERVAL)


def success_drop(traffic: dict[str, Any], hour: dict[str, Any]) -> Problem | None:
    """The interval's success rate this many points below the previous hour's; both with enough
    payments that a quiet night's handful never pages."""
    volume = settings.ALERT_PAYMENTS_MIN_VOLUME
    if traffic["total"] < volume or hour["total"] < volume:
        return None
    usual = 100.0 * hour["succeeded"] / hour["total"]
    now = traffic["success_rate_pct"]
    if now >= usual - settings.ALERT_SUCCESS_DROP:
        return None
    return Problem("success_rate_drop", "warning",
                   f"{now:.1f}% of {traffic['total']} payments succeeded{_over(traffic)}, against {usual:.1f}% "
                   f"over the previous hour (warning {settings.ALERT_SUCCESS_DROP} points below)")


def decline_spike(traffic: dict[str, Any], hour: dict[str, Any]) -> Problem | None:
    """Decline codes at ALERT_DECLINE_SPIKE_FACTOR times their share of the previous hour's
    payments, named with their counts (a card testing attack, an issuer's outage, a bad deploy)."""
    if not traffic["total"] or hour["total"] < settings.ALERT_PAYMENTS_MIN_VOLUME:
        return None
    rising = []
    for code, count in traffic["declines"].items():
        share = count / traffic["total"]
        usual = hour["declines"].get(code, 0) / hour["total"]
        if count >= settings.ALERT_DECLINE_SPIKE_MIN and share > settings.ALERT_DECLINE_SPIKE_FACTOR * usual:
            rising.append(f"{code} {count} of {traffic['total']} ({100 * share:.0f}%, usually {100 * usual:.1f}%)")
    if not rising:
        return None
    return Problem("decline_spike", "warning", f"declines rising{_over(traffic)}: " + "; ".join(rising))


def _over(traffic: dict[str, Any]) -> str:
    return f" over {traffic['interval_s']:.0f} s" if traffic.get("interval_s") else ""
