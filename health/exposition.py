"""Prometheus' text exposition format (version 0.0.4): metric families written out with
their HELP and TYPE lines, label values escaped, histograms as cumulative `le` buckets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str  # counters without their `_total`: it is added to each sample
    type: str  # counter, gauge, histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | None, **labels: str) -> None:
        """One sample; None (nothing measured) is left out rather than written as 0."""
        if value is None:
            return
        suffix = "_total" if self.type == "counter" else ""
        self.samples.append((suffix, labels, float(value)))

    def add_histogram(self, *, bounds: Sequence[float], counts: Sequence[int], total: float,
                      **labels: str) -> None:
        """`counts` per bucket, the last one above every bound (+Inf); written cumulative."""
        running = 0
        for bound, count in zip([*bounds, math.inf], counts, strict=False):
            running += count
            self.samples.append(("_bucket", {**labels, "le": _number(bound)}, float(running)))
        self.samples.append(("_sum", labels, float(total)))
        self.samples.append(("_count", labels, float(running)))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name}{'_total' if family.type == 'counter' else ''} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name}{'_total' if family.type == 'counter' else ''} {family.type}")
        for suffix, labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
