"""System Health's component cards: each reading as bars, figures and a level ops can see at a glance."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from health.models import (
    ComponentSnapshot,
    HealthCheckRun,
)

# Components whose utilisation is charted, in the order cards and legends show them.
POOL_COMPONENTS = ("database", "web", "payment_http", "http", "logging", "redis")


# --- System Health -------------------------------------------------------------------------
@dataclass
class Bar:
    label: str
    pct: float | None
    level: str  # ok, warning, critical, unknown

    @property
    def width(self) -> float:
        return max(0.0, min(100.0, self.pct or 0.0))


@dataclass
class Card:
    component: str
    status: str
    message: str
    bars: list[Bar] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)
    breaker: dict[str, Any] | None = None


def utilisation_level(pct: float | None) -> str:
    if pct is None:
        return "unknown"
    if pct > settings.ALERT_CRITICAL_THRESHOLD:
        return "critical"
    if pct > settings.ALERT_WARNING_THRESHOLD:
        return "warning"
    return "ok"


def _bar(label: str, pct: float | None) -> Bar:
    return Bar(label=label, pct=round(pct, 1) if pct is not None else None, level=utilisation_level(pct))


def component_cards(*, run: HealthCheckRun | None, breaker: dict[str, Any] | None) -> list[Card]:
    """One card per component of the latest run, pools first."""
    if run is None:
        return []
    snapshots = list(ComponentSnapshot.objects.filter(run=run))
    order = {name: i for i, name in enumerate(POOL_COMPONENTS + ("gateway", "celery", "payments"))}
    snapshots.sort(key=lambda s: (order.get(s.component, 99), s.component))
    return [_card(snapshot, breaker if snapshot.component == "gateway" else None) for snapshot in snapshots]


def _card(snapshot: ComponentSnapshot, breaker: dict[str, Any] | None) -> Card:
    f = snapshot.figures or {}
    card = Card(component=snapshot.component, status=snapshot.status, message=snapshot.message)
    name = snapshot.component
    if name == "database":
        card.bars.append(_bar(f"pool (fullest: {f.get('fullest') or '–'})", f.get("utilisation_pct")))
        server = f.get("server") or {}
        if server.get("max_connections"):
            card.bars.append(_bar("server connections", 100.0 * server.get("total", 0) / server["max_connections"]))
        card.figures = [
            ("in use", f.get("in_use")), ("idle", f.get("idle")), ("max", f.get("max")),
            ("waiting", f.get("waiting")), ("wait time", _ms(f.get("wait_ms"))),
            ("queued", f.get("queued")),
            ("timeouts", (f.get("acquire_errors") or 0) + (f.get("exhausted_503") or 0)
             if "acquire_errors" in f else None),
            ("errors", f.get("errors")), ("processes", f.get("processes")),
            ("server", f"{server.get('total')} of {server.get('max_connections')}" if server else None),
        ]
    elif name in ("payment_http", "http"):
        pools = f.get("pools") or []
        card.bars.append(_bar(f"pool (fullest: {f.get('fullest') or '–'})", f.get("utilisation_pct")))
        card.figures = [
            ("in use", f.get("in_use")), ("idle", f.get("idle")), ("max", f.get("max")),
            ("waiting", f.get("waiting")),
            ("wait time", _ms(sum(p.get("wait_ms") or 0 for p in pools)) if pools else None),
            ("longest wait", _ms(max((p.get("max_wait_ms") or 0 for p in pools), default=0)) if pools else None),
            ("timeouts", f.get("pool_full")), ("requests", f.get("requests")), ("errors", f.get("errors")),
        ]
        if "limit" in f:  # the gateway concurrency limit, with the payment gateway's pools
            card.figures += [
                ("call limit", f"{f.get('limit')} of {f.get('limit_max')}"), ("calls in flight", f.get("in_flight")),
                ("refused (saturated)", f.get("shed")), ("slow calls", f.get("slow_calls")),
            ]
    elif name == "web":
        card.bars.append(_bar(f"threads (fullest: {f.get('fullest') or '–'})", f.get("utilisation_pct")))
        card.figures = [
            ("busy", f.get("in_use")), ("threads", f.get("max")), ("waiting", f.get("waiting")),
            ("requests", f.get("requests")), ("waited > 100 ms", f.get("queued")),
            ("refused unstarted", f.get("shed")),
            ("longest wait", _ms(f.get("max_wait_ms"))), ("workers", f.get("processes")),
        ]
    elif name == "logging":
        if f.get("cloudwatch"):
            card.bars.append(_bar("CloudWatch queue", f.get("utilisation_pct")))
        card.figures = [("queued", f.get("in_use")), ("capacity", f.get("max")), ("sent", f.get("sent")),
                        ("dropped", f.get("dropped")), ("errors", f.get("errors"))]
    elif name == "redis":
        if f.get("maxmemory"):
            card.bars.append(_bar("memory", f.get("utilisation_pct")))
        card.figures = [("latency", _ms(f.get("latency_ms"))), ("clients", f.get("in_use")),
                        ("memory", _mib(f.get("used_memory"))), ("evicted keys", f.get("evicted_keys")),
                        ("rejected connections", f.get("rejected_connections"))]
    elif name == "gateway":
        card.figures = [("probe latency", _ms(f.get("latency_ms"))),
                        # Only when the fleet pays through more than one (config_drift).
                        ("gateway accounts in the fleet", len(f["gateways"]) if f.get("gateways") else None)]
        card.breaker = breaker or f.get("breaker")
    elif name == "celery":
        card.figures = [("workers", f.get("workers")), ("expected", f.get("expected")),
                        ("waiting tasks", f.get("waiting"))]
    elif name == "payments":
        in_flight = f.get("in_flight") or {}
        traffic = f.get("traffic") or {}
        latency = traffic.get("latency") or {}
        card.figures = [("in flight", in_flight.get("count")), ("unsettled overdue", f.get("errors")),
                        ("since the last run", traffic.get("total")),
                        ("success rate", f"{traffic['success_rate_pct']}%"
                         if traffic.get("success_rate_pct") is not None else None),
                        ("gateway p95", _ms(latency.get("p95_ms")))]
    else:
        card.figures = [(key, value) for key, value in f.items() if isinstance(value, (int, float, str))][:8]
    card.figures = [(label, value) for label, value in card.figures if value is not None]
    return card


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _mib(value: int | None) -> str | None:
    return None if value is None else f"{value / 1048576:.1f} MiB"


def breaker_state() -> dict[str, Any] | None:
    """The gateway breaker as this process sees it now (shared through Redis)."""
    from payments.gateway import get_gateway

    breaker = get_gateway().breaker
    if breaker is None:
        return None
    snap = breaker.snapshot()
    forced = dict(snap.forced) if snap.forced else None
    if forced and forced.get("until"):
        forced["until_dt"] = datetime.fromtimestamp(float(forced["until"]), tz=timezone.get_current_timezone())
    return {"state": snap.state, "calls": snap.calls, "failures": snap.failures,
            "failure_rate": round(snap.failure_rate * 100, 1), "retry_after": round(snap.retry_after, 1),
            "forced": forced, "shared": snap.shared}
