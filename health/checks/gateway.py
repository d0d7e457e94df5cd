"""Payment gateway: a probe with no financial effect, its latency, and the breaker's state."""

from __future__ import annotations

from typing import Any

from health.checks.base import Check, Problem, Reading


class GatewayCheck(Check):
    name = "gateway"

    def measure(self) -> Reading:
        from health.services.breaker_alerts import breaker_open_finding
        from payments.gateway import get_gateway
        from payments.gateway.errors import GatewayCredentialsRefused, GatewayError

        gateway = get_gateway()
        reading = Reading()
        snapshot = gateway.breaker.snapshot() if gateway.breaker is not None else None
        if snapshot is not None:
            reading.figures["breaker"] = _breaker(snapshot)
            if snapshot.state == "open":
                severity, message = breaker_open_finding(snapshot)
                reading.problems.append(Problem("circuit_open", severity, message))
            elif snapshot.state == "half_open":
                reading.status = "degraded"
        try:
            latency = gateway.probe()
        except GatewayCredentialsRefused as exc:
            # Every payment is refused until someone fixes the key: nothing is charged meanwhile.
            reading.status = "down"
            reading.message = f"probe refused: {exc}"
            reading.problems.append(Problem("credentials_refused", "critical",
                                            f"the gateway refuses our credentials: {exc}"))
            return reading
        except GatewayError as exc:
            reading.status = "down"
            reading.message = f"probe failed: {exc}"
            reading.problems.append(Problem("unreachable", "error", f"gateway probe failed: {exc}"))
            return reading
        reading.figures["latency_ms"] = round(latency * 1000, 2)
        state = snapshot.state if snapshot is not None else "none"
        reading.message = f"probe answered in {latency * 1000:.0f} ms; breaker {state}"
        return reading


def _breaker(snapshot: Any) -> dict[str, Any]:
    return {
        "state": snapshot.state, "calls": snapshot.calls, "failures": snapshot.failures,
        "failure_rate": round(snapshot.failure_rate, 4), "retry_after": round(snapshot.retry_after, 1),
        "forced": snapshot.forced, "shared": snapshot.shared,
    }
