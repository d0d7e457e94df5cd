"""What the proxy holds between requests: fault rules, idempotency keys, fast mode, counters.

The request path (proxy.py, answers.py) consults it; the control API (control.py) reads and
changes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sandbox.fast import FastGateway
from sandbox.faults import FaultBook, FaultRule
from sandbox.idempotency import IdempotencyStore
from sandbox.listener import Listener
from sandbox.upstream import Upstream


@dataclass
class Stats:
    connections_opened: int = 0  # connections that carried at least one gateway request
    requests: int = 0  # gateway requests (the control API is not counted)
    forwarded: int = 0  # answered by the gateway
    replayed: int = 0  # answered from the idempotency store
    answered_locally: int = 0  # answered by fast mode
    upstream_errors: int = 0  # the gateway gave no answer
    in_flight: int = 0  # gauge: gateway requests being handled now
    connections_open: int = 0  # gauge: open connections among connections_opened

    def reset(self) -> None:
        # Gauges describe the present, not history: keep them.
        in_flight, open_ = self.in_flight, self.connections_open
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)
        self.in_flight, self.connections_open = in_flight, open_


@dataclass(eq=False)
class ProxyState:
    upstream: Upstream
    listener: Listener
    fast_mode: bool = False
    faults: FaultBook = field(default_factory=FaultBook)
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    fast: FastGateway = field(default_factory=FastGateway)
    stats: Stats = field(default_factory=Stats)

    @property
    def refusing_for_ms(self) -> int:
        return self.listener.refusing_for_ms

    def stats_dict(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self.stats)
        data["faults_applied"] = dict(self.faults.applied)
        data["fast"] = self.fast_mode
        data["idempotency_keys"] = len(self.idempotency)
        data["refusing_for_ms"] = self.refusing_for_ms
        return data

    async def add_fault(self, rule: FaultRule) -> FaultRule:
        if rule.kind == "refuse":
            # Applied at once rather than stored: no request will arrive to trigger it.
            self.faults.add(rule)
            self.faults.record(rule)
            await self.listener.refuse_for((rule.duration_ms or 0) / 1000)
            return rule
        return self.faults.add(rule)

    async def reset(self, *, upstream: bool) -> None:
        self.stats.reset()
        self.faults.clear()
        self.faults.reset_counts()
        self.idempotency.clear()
        self.fast.clear()
        if upstream:
            await self.upstream.flush()
