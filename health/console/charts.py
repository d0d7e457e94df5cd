"""Charts drawn on the server as SVG: no script, nothing loaded from elsewhere, so the
console's Content-Security-Policy holds and the page prints and screenshots as it shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Readable on the admin's light and dark themes; each series also has a dash pattern and a
# legend entry, so no line is told apart by colour alone.
PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#805ad5", "#b83280", "#4a5568", "#975a16")
DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2", "10 4", "4 4")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[datetime, float | None]]


@dataclass(frozen=True)
class Threshold:
    value: float
    label: str
    colour: str


def line_chart(*, series: Sequence[Series], start: datetime, end: datetime, unit: str, title: str,
               y_max: float | None = None, thresholds: Sequence[Threshold] = (), width: int = 720,
               height: int = 220) -> SafeString:
    """A time-series line chart; a gap in the data (None) breaks the line instead of bridging it."""
    left, right, top, bottom = 52, 12, 26, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for _, v in s.points if v is not None]
    ceiling = y_max if y_max is not None else _nice_ceiling(max(values, default=0.0))
    span = max(1e-9, (end - start).total_seconds())

    def x(at: datetime) -> float:
        return left + plot_w * min(1.0, max(0.0, (at - start).total_seconds() / span))

    def y(value: float) -> float:
        return top + plot_h * (1 - min(1.0, max(0.0, value / ceiling)))

    parts = [
        f'<svg class="console-chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):  # horizontal grid and y labels
        value = ceiling * i / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'class="chart-grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" class="chart-label">'
                     f"{_fmt(value)}{escape(unit)}</text>")
    for i in range(5):  # time labels
        at = start + (end - start) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(at):.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}" '
                     f'class="chart-label">{at:%H:%M}</text>')
    for threshold in thresholds:
        if threshold.value <= ceiling:
            parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(threshold.value):.1f}" '
                         f'y2="{y(threshold.value):.1f}" stroke="{threshold.colour}" stroke-dasharray="4 3" '
                         f'stroke-width="1.2"/>')
            parts.append(f'<text x="{left + plot_w - 2}" y="{y(threshold.value) - 3:.1f}" text-anchor="end" '
                         f'class="chart-label" fill="{threshold.colour}">{escape(threshold.label)}</text>')
    legend_x = left
    for index, item in enumerate(series):
        colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
        for run in _runs(item.points):
            if len(run) == 1:
                at, value = run[0]
                parts.append(f'<circle cx="{x(at):.1f}" cy="{y(value):.1f}" r="2.5" fill="{colour}"/>')
                continue
            coords = " ".join(f"{x(at):.1f},{y(value):.1f}" for at, value in run)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                         f'stroke-dasharray="{dash}" points="{coords}"/>')
        latest = next((v for _, v in reversed(item.points) if v is not None), None)
        label = f"{item.name} ({_fmt(latest)}{unit})" if latest is not None else f"{item.name} (no data)"
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{height - 10}" y2="{height - 10}" '
                     f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>')
        parts.append(f'<text x="{legend_x + 22}" y="{height - 6}" class="chart-legend">{escape(label)}</text>')
        legend_x += 30 + 7 * len(label)
    if not values:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
                     f'class="chart-label">no data in this range</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


@dataclass(frozen=True)
class Span:
    label: str
    wait_start: float  # s from the drill's start
    start: float
    end: float
    failed: bool = False


def timeline_chart(*, spans: Sequence[Span], title: str, width: int = 720) -> SafeString:
    """One row per request: waiting for a connection (amber), then running (green or red)."""
    left, right, top, row = 70, 12, 26, 12
    height = top + row * len(spans) + 34
    plot_w = width - left - right
    finish = max((s.end for s in spans), default=1.0) or 1.0

    def x(t: float) -> float:
        return left + plot_w * max(0.0, t) / finish

    parts = [
        f'<svg class="console-chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i, span in enumerate(spans):
        y = top + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 9}" text-anchor="end" class="chart-label">'
                     f"{escape(span.label)}</text>")
        if span.start > span.wait_start:
            parts.append(f'<rect x="{x(span.wait_start):.1f}" y="{y + 1}" height="{row - 3}" '
                         f'width="{max(1.0, x(span.start) - x(span.wait_start)):.1f}" fill="#d69e2e"/>')
        colour = "#c53030" if span.failed else "#38a169"
        parts.append(f'<rect x="{x(span.start):.1f}" y="{y + 1}" height="{row - 3}" '
                     f'width="{max(1.0, x(span.end) - x(span.start)):.1f}" fill="{colour}"/>')
    base = top + row * len(spans) + 14
    parts.append(f'<text x="{left}" y="{base}" class="chart-label">0 s</text>')
    parts.append(f'<text x="{left + plot_w}" y="{base}" text-anchor="end" class="chart-label">{finish:.2f} s</text>')
    parts.append(f'<rect x="{left + 60}" y="{base - 8}" width="12" height="8" fill="#d69e2e"/>'
                 f'<text x="{left + 76}" y="{base}" class="chart-legend">waiting for a connection</text>'
                 f'<rect x="{left + 250}" y="{base - 8}" width="12" height="8" fill="#38a169"/>'
                 f'<text x="{left + 266}" y="{base}" class="chart-legend">running</text>'
                 f'<rect x="{left + 340}" y="{base - 8}" width="12" height="8" fill="#c53030"/>'
                 f'<text x="{left + 356}" y="{base}" class="chart-legend">failed</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _runs(points: Sequence[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    runs: list[list[tuple[datetime, float]]] = [[]]
    for at, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((at, value))
    return [run for run in runs if run]


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000):
        if value <= step:
            return float(step)
    return float(value * 1.1)


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"
