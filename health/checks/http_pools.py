"""HTTP connection pools, as every process published them: the payment gateway's and the rest."""

from __future__ import annotations

from typing import Any, ClassVar

from health.checks.base import Check, Problem, Reading, fleet_view, percent
from health.checks.gateway_limit import limit_figures

PAYMENT_CLIENT = "payment"  # InstrumentedAdapter name of the gateway client (payments.gateway.client)


class HttpPoolsCheck(Check):
    payment: ClassVar[bool]  # the gateway's pools, or every other client's

    def measure(self) -> Reading:
        docs, shared = fleet_view()
        pools = [_pool(doc, pool) for doc in docs for pool in doc.get("http") or []
                 if (pool["client"] == PAYMENT_CLIENT) == self.payment]
        worst = max(pools, key=lambda p: p["utilisation_pct"] or 0, default=None)
        figures: dict[str, Any] = {
            key: sum(p[key] for p in pools) for key in ("in_use", "idle", "max", "waiting", "requests", "pool_full")
        }
        figures.update(
            errors=sum(p["errors"] for p in pools),
            utilisation_pct=worst["utilisation_pct"] if worst else None,
            fullest=f"{worst['process']} {worst['host']}" if worst else None,
            shared=shared, pools=pools,
        )
        if not pools:
            return Reading(figures=figures, message="no connections opened yet")
        reading = Reading(figures=figures, message=(
            f"{figures['in_use']} of {figures['max']} connections in use in {len(pools)} pools; "
            f"{figures['requests']} requests, {figures['errors']} errors recently"))
        reading.utilisation["pool_utilisation"] = figures["utilisation_pct"]
        full = [p for p in pools if p["pool_full"]]
        if full:
            reading.problems.append(Problem(
                "pool_exhausted", "error",
                f"{sum(p['pool_full'] for p in full)} requests found no free connection "
                f"({', '.join(sorted({p['host'] for p in full}))})",
            ))
        if figures["errors"]:
            failing = sorted({p["host"] for p in pools if p["errors"]})
            reading.problems.append(Problem(
                "request_errors", "warning",
                f"{figures['errors']} of {figures['requests']} requests failed recently ({', '.join(failing)})",
            ))
        return reading


def _pool(doc: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    recent = pool.get("recent", {})
    return {
        "process": doc["process"], "client": pool["client"], "host": pool["host"],
        "in_use": pool["in_use"], "idle": pool["idle"], "max": pool["max"], "waiting": pool["waiting"],
        "utilisation_pct": percent(pool["in_use"], pool["max"]),
        "requests": int(recent.get("requests", 0)), "errors": int(recent.get("errors", 0)),
        "pool_full": int(recent.get("pool_full", 0)), "wait_ms": recent.get("wait_ms_total", 0),
        "max_wait_ms": pool.get("max_wait_ms", 0),
    }


class PaymentHttpCheck(HttpPoolsCheck):
    name = "payment_http"
    payment = True

    def measure(self) -> Reading:
        reading = super().measure()
        figures, problems = limit_figures(fleet_view()[0])
        reading.figures.update(figures)
        reading.problems.extend(problems)
        if figures:
            reading.message += (f"; limit {figures['limit']} of {figures['limit_max']} calls, "
                                f"{figures['in_flight']} in flight, {figures['shed']} refused recently")
        return reading


class OutboundHttpCheck(HttpPoolsCheck):
    name = "http"
    payment = False
