"""Payment gateway: a probe with no financial effect, its latency, and the breaker's state."""

from __future__ import annotations

from typing import Any

from health.checks.base import Check, Problem, Reading, fleet_view


class GatewayCheck(Check):
    name = "gateway"

    def measure(self) -> Reading:
        from health.services.breaker_alerts import breaker_open_finding
        from payments.gateway import get_gateway
        from payments.gateway.errors import GatewayCredentialsRefused, GatewayError

        gateway = get_gateway()
        reading = Reading()
        drift = gateway_drift(fleet_view()[0])
        if drift is not None:
            reading.figures["gateways"] = drift
            # Another address is another gateway for sure; another key on the same one may be a
            # key rotation's rolling restart as well as another account.
            severity = "critical" if len({entry["address"] for entry in drift}) > 1 else "error"
            reading.problems.append(Problem("config_drift", severity, drift_message(drift)))
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


def gateway_drift(docs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The gateways the fleet's live processes pay through, when there is more than one (a
    process left on an old key or another account after a deploy): each with its processes."""
    by_fingerprint: dict[str, dict[str, Any]] = {}
    for doc in docs:
        identity = doc.get("gateway")
        if not isinstance(identity, dict) or not identity.get("fingerprint"):
            continue  # a process of an older release publishes none
        entry = by_fingerprint.setdefault(identity["fingerprint"], {
            "address": identity.get("address", ""), "fingerprint": identity["fingerprint"], "processes": []})
        entry["processes"].append(f"{doc.get('role', '?')} {doc.get('host', '?')}:{doc.get('pid', '?')}")
    if len(by_fingerprint) < 2:
        return None
    return sorted(by_fingerprint.values(), key=lambda entry: -len(entry["processes"]))


def drift_message(drift: list[dict[str, Any]]) -> str:
    groups = "; ".join(f"{entry['address']} key {entry['fingerprint'][:8]}: {', '.join(sorted(entry['processes']))}"
                       for entry in drift)
    return (f"the fleet pays through {len(drift)} different gateway accounts or keys ({groups}); "
            "a process on the wrong one charges where the others never look")
