"""System Health's Payments section: what the fleet's payments did over the last hour or day,
from the per-interval readings the health runs stored (health.payment_figures).

Three queries whatever the history holds, each an indexed range scan aggregated in SQL: the
series per chart bucket, the latency histogram summed bucket by bucket (so the range's
percentiles are those of every try in it, not an average of percentiles), and the decline
codes summed per code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from health.console.charts import Series
from health.payment_figures import histogram_quantile

TOP_DECLINES = 5
_SCOPE = """
    FROM health_componentsnapshot
    WHERE component = 'payments' AND checked_at >= %s AND checked_at < %s AND figures ? 'traffic'
"""


@dataclass(frozen=True)
class PaymentsOverview:
    start: datetime
    end: datetime
    bucket: int  # s per chart point
    read_timeout_ms: float | None
    summary: dict[str, Any]
    declines: list[tuple[str, int]]
    latency: list[Series]
    rates: list[Series]


def payments_overview(*, span: timedelta, bucket: int, now: datetime | None = None) -> PaymentsOverview:
    end = now or timezone.now()
    start = end - span
    rows = _series_rows(start=start, end=end, bucket=bucket)
    bounds_ms, counts = _histogram(start=start, end=end)
    declines = _declines(start=start, end=end)
    buckets = [start + timedelta(seconds=bucket * i) for i in range(int(span.total_seconds() // bucket) + 1)]
    by_bucket = {row["at"]: row for row in rows}

    def line(name: str, value: Any) -> Series:
        return Series(name, [(at, value(by_bucket[at]) if at in by_bucket else None) for at in buckets])

    total = sum(row["total"] for row in rows)
    succeeded = sum(row["succeeded"] for row in rows)
    attempts = sum(row["attempts"] for row in rows)
    seconds = sum(row["seconds"] for row in rows)
    bounds = [b / 1000.0 for b in bounds_ms]
    summary = {
        "payments": total,
        "success_rate_pct": _pct(succeeded, total),
        "per_minute": round(total * 60.0 / seconds, 2) if seconds else None,
        "timeouts": sum(row["timeouts"] for row in rows),
        "timeout_rate_pct": _pct(sum(row["timeouts"] for row in rows), attempts),
        "conflicts": sum(row["conflicts"] for row in rows),
        "rate_limited": sum(row["rate_limited"] for row in rows),
        "server_errors": sum(row["server_errors"] for row in rows),
        "tries": sum(counts),
        **{name: _ms(histogram_quantile(q, bounds, counts) if bounds else None)
           for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99))},
    }
    return PaymentsOverview(
        start=start, end=end, bucket=bucket, read_timeout_ms=bounds_ms[-1] if bounds_ms else None,
        summary=summary, declines=declines,
        latency=[line("p50", lambda r: r["p50"]), line("p95", lambda r: r["p95"]), line("p99", lambda r: r["p99"])],
        rates=[line("success rate", lambda r: _pct(r["succeeded"], r["total"])),
               line("timeout rate", lambda r: _pct(r["timeouts"], r["attempts"]))],
    )


def _series_rows(*, start: datetime, end: datetime, bucket: int) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT date_bin(%s::interval, checked_at, %s),
                   sum((figures->'traffic'->>'total')::int),
                   sum((figures->'traffic'->'payments'->>'succeeded')::int),
                   sum((figures->'traffic'->'gateway'->>'attempts')::int),
                   sum((figures->'traffic'->'gateway'->>'timeouts')::int),
                   sum((figures->'traffic'->'gateway'->>'conflicts')::int),
                   sum((figures->'traffic'->'gateway'->>'rate_limited')::int),
                   sum((figures->'traffic'->'gateway'->>'server_errors')::int),
                   sum(coalesce((figures->'traffic'->>'interval_s')::float, 0)),
                   max((figures->'traffic'->'latency'->>'p50_ms')::float),
                   max((figures->'traffic'->'latency'->>'p95_ms')::float),
                   max((figures->'traffic'->'latency'->>'p99_ms')::float)
            {_SCOPE}
            GROUP BY 1 ORDER BY 1
            """,
            [f"{bucket} seconds", start, start, end],
        )
        names = ("at", "total", "succeeded", "attempts", "timeouts", "conflicts", "rate_limited", "server_errors",
                 "seconds", "p50", "p95", "p99")
        return [{name: (value if value is not None or name in ("p50", "p95", "p99") else 0)
                 for name, value in zip(names, row, strict=False)} for row in cursor.fetchall()]


def _histogram(*, start: datetime, end: datetime) -> tuple[list[float], list[int]]:
    """The bounds (ms) of the newest reading and every reading's counts with those bounds, summed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH latest AS (
                SELECT figures->'traffic'->'latency'->'le_ms' AS le {_SCOPE}
                ORDER BY checked_at DESC LIMIT 1
            ), picked AS (
                SELECT figures->'traffic'->'latency'->'counts' AS counts {_SCOPE}
                AND figures->'traffic'->'latency'->'le_ms' = (SELECT le FROM latest)
            )
            SELECT (SELECT le FROM latest), array(
                SELECT sum((counts->>i)::int)::int FROM picked,
                       generate_series(0, jsonb_array_length((SELECT le FROM latest))) AS i
                GROUP BY i ORDER BY i)
            """,
            [start, end, start, end],
        )
        le, counts = cursor.fetchone()
    if not le:
        return [], []
    if isinstance(le, str):  # Django leaves jsonb as text for its JSONField to decode
        le = json.loads(le)
    return [float(b) for b in le], [int(c or 0) for c in counts]


def _declines(*, start: datetime, end: datetime) -> list[tuple[str, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT code, sum(n::int) AS total
            FROM (SELECT figures {_SCOPE}) AS s, jsonb_each_text(s.figures->'traffic'->'declines') AS d(code, n)
            GROUP BY code ORDER BY total DESC, code LIMIT %s
            """,
            [start, end, TOP_DECLINES],
        )
        return [(code, int(total)) for code, total in cursor.fetchall()]


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 1) if seconds is not None else None
