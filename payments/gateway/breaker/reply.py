"""The shared state as the Lua script answers it, and how a transition is told (log line and listener)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from payments.gateway.breaker.policy import TRANSITION_CATEGORY, BreakerConfig, BreakerSnapshot, Permit

logger = logging.getLogger(__name__)


def reply_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Reply:
    """One answer of the script (or of the local breaker), in the script's array order."""

    ok: bool
    probe: bool
    retry_ms: int
    state: str
    calls: int
    failures: int
    opened_at_ms: int
    t_old: str
    t_new: str
    t_reason: str
    forced: dict[str, Any] | None
    now_ms: int
    deny: str

    @classmethod
    def parse(cls, raw: list[Any]) -> Reply:
        if len(raw) == 3:  # the short form: allowed, closed, not forced, nothing changed
            return cls(
                ok=True, probe=False, retry_ms=0, state="closed", calls=int(raw[0]),
                failures=int(raw[1]), opened_at_ms=-1, t_old="", t_new="", t_reason="",
                forced=None, now_ms=int(raw[2]), deny="",
            )
        f_state, f_reason, f_by, f_until = (reply_text(v) for v in raw[10:14])
        return cls(
            ok=bool(raw[0]),
            probe=bool(raw[1]),
            retry_ms=int(raw[2]),
            state=reply_text(raw[3]),
            calls=int(raw[4]),
            failures=int(raw[5]),
            opened_at_ms=int(raw[6]),
            t_old=reply_text(raw[7]),
            t_new=reply_text(raw[8]),
            t_reason=reply_text(raw[9]),
            forced=(
                {"state": f_state, "reason": f_reason, "by": f_by, "until": int(f_until) / 1000}
                if f_state
                else None
            ),
            now_ms=int(raw[14]),
            deny=reply_text(raw[15]),
        )

    def snapshot(self, name: str, *, shared: bool) -> BreakerSnapshot:
        rate = self.failures / self.calls if self.calls > 0 else 0.0
        return BreakerSnapshot(
            name=name,
            state=self.state,  # type: ignore[arg-type]  # the script answers only the three states
            calls=self.calls,
            failures=self.failures,
            failure_rate=rate,
            opened_at=self.opened_at_ms / 1000 if self.opened_at_ms >= 0 else None,
            retry_after=self.retry_ms / 1000,
            forced=self.forced,
            shared=shared,
        )


@dataclass(frozen=True)
class Heard:
    """The shared state as this process last heard it from Redis."""

    free: bool  # closed and not forced: a call may pass on this alone while it is fresh
    calls: int  # the shared window then (-1: not measured)
    failures: int
    at: float  # the breaker's clock when heard
    now_ms: int  # Redis time of that answer, so that an older answer never wins


FREE_PERMIT = Permit(probe=False, shared=True)


def transition_report(reply: Reply, *, config: BreakerConfig, shared: bool,
                      on_transition: Callable[[str, str, BreakerSnapshot], None] | None) -> None:
    """Log a transition this call made and hand it to ``on_transition``."""
    if not reply.t_new:
        return
    snap = reply.snapshot(config.name, shared=shared)
    logger.log(
        logging.WARNING if reply.t_new == "open" else logging.INFO,
        "circuit %s: %s -> %s (%s; %d of %d calls failed)",
        config.name, reply.t_old, reply.t_new, reply.t_reason,
        snap.failures, snap.calls,
        extra={
            "category": TRANSITION_CATEGORY.get(reply.t_new, "circuit_transition"),
            "breaker": config.name,
            "from_state": reply.t_old,
            "to_state": reply.t_new,
            "reason": reply.t_reason,
            "failure_rate": round(snap.failure_rate, 4),
            "calls": snap.calls,
            "failures": snap.failures,
            "forced": snap.forced,
            "shared": shared,
        },
    )
    if on_transition is not None:
        try:
            on_transition(reply.t_old, reply.t_new, snap)
        except Exception:
            logger.exception(
                "circuit %s: on_transition callback failed", config.name,
                extra={"category": "circuit_callback_error", "breaker": config.name},
            )
