"""What a check returns, and the typed errors it may raise instead."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from redis.exceptions import RedisError

STATUS_RANK = {"ok": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class Problem:
    """Something wrong that deserves an alert: `condition` names it within the component."""

    condition: str
    severity: str  # critical, error, warning, info
    message: str


@dataclass(frozen=True)
class Level:
    """A value judged against thresholds of its own (warning, then error), with the same
    hysteresis as utilisation: an alert at a level keeps it until the value falls
    ALERT_HYSTERESIS_MARGIN below that level's threshold."""

    value: float
    warning: float
    error: float
    message: str


@dataclass
class Reading:
    status: str = "ok"  # ok, degraded, down
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    # condition -> % of a capacity in use, judged against ALERT_*_THRESHOLD by the rules
    utilisation: dict[str, float] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # condition -> a value with thresholds of its own (gateway latency against the read timeout)
    levels: dict[str, Level] = field(default_factory=dict)


class CheckError(Exception):
    """Raised by a check that could not measure; the message is short and holds no secret."""

    status: ClassVar[str] = "down"
    severity: ClassVar[str] = "error"
    default_condition: ClassVar[str] = "unreachable"

    def __init__(self, message: str, *, condition: str | None = None, figures: dict[str, Any] | None = None):
        super().__init__(message)
        self.condition = condition or self.default_condition
        self.figures = figures or {}

    def reading(self) -> Reading:
        return Reading(status=self.status, message=str(self), figures=self.figures,
                       problems=[Problem(self.condition, self.severity, str(self))])


class ServiceUnavailable(CheckError):
    """The dependency does not answer: the component is down, an error alert."""


class ServiceWarning(CheckError):
    """The dependency answers but not as it should: degraded, a warning alert."""

    status = "degraded"
    severity = "warning"
    default_condition = "degraded"


class Check:
    """One dependency: `measure()` returns a reading or raises a CheckError, within `budget` s."""

    name: ClassVar[str]
    budget: float | None = None  # s; None: settings.HEALTH_CHECK_TIMEOUT

    def measure(self) -> Reading:
        raise NotImplementedError


def percent(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


_view_lock = threading.Lock()
_view: tuple[float, list[dict[str, Any]], bool] | None = None
VIEW_REUSE = 0.25  # s; the checks of one run share one read of the fleet


def fleet_view_forget() -> None:
    """A new run reads the fleet afresh: what the last run read is not this run's view."""
    global _view
    with _view_lock:
        _view = None


def fleet_view() -> tuple[list[dict[str, Any]], bool]:
    """(documents, shared): every live process's pool figures, this process's fresh ones in
    place of its published ones; `shared` is False when Redis is away and only this
    process's own view is known."""
    global _view
    from health.selectors import fleet_pool_stats
    from health.services.publishing import pool_stats_collect

    with _view_lock:
        if _view is not None and time.monotonic() - _view[0] < VIEW_REUSE:
            return _view[1], _view[2]
        own = pool_stats_collect()
        try:
            docs, shared = [d for d in fleet_pool_stats() if d.get("process") != own["process"]] + [own], True
        except RedisError:
            docs, shared = [own], False
        _view = (time.monotonic(), docs, shared)
        return docs, shared
