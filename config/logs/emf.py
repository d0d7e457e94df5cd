"""CloudWatch metrics in Embedded Metric Format, written as ordinary log records.

CloudWatch Logs turns a JSON event carrying an `_aws` block into metrics, so the health
check and the payment code get metrics through the log pipeline they already have: no
PutMetricData calls, no extra credentials, nothing more that can block. On stdout the
same line is just a JSON record.
"""

from __future__ import annotations

import logging
import math
import time

from config.logs.formatter import EMF_ATTR

METRICS_LOGGER = "payops.metrics"
DEFAULT_NAMESPACE = "PaymentOps"

logger = logging.getLogger(METRICS_LOGGER)

# Units CloudWatch accepts (MetricDatum.Unit); anything else fails the whole document.
UNITS = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
        "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    }
)
MAX_METRICS = 100  # per directive (EMF specification)
MAX_DIMENSIONS = 30  # per dimension set

# Top-level names the JSON formatter already writes; a metric or dimension of that name
# would overwrite them. `role` and `host` may be dimensions: they mean the same thing.
_RESERVED = frozenset({"_aws", "ts", "level", "logger", "message", "pid", "category"})


def _namespace() -> str:
    from django.conf import settings

    try:
        return getattr(settings, "METRICS_NAMESPACE", DEFAULT_NAMESPACE) or DEFAULT_NAMESPACE
    except Exception:  # settings not configured (a script): metrics still work
        return DEFAULT_NAMESPACE


def emf_document(namespace: str | None, dimensions: dict[str, str],
                 metrics: dict[str, tuple[float | None, str]], *, timestamp_ms: int | None = None) -> dict:
    """The EMF document for one set of values; raises ValueError for names or units CloudWatch refuses."""
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS} dimensions, got {len(dimensions)}")
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"at most {MAX_METRICS} metrics, got {len(metrics)}")
    clash = (set(dimensions) | set(metrics)) & _RESERVED
    if clash or set(dimensions) & set(metrics):
        raise ValueError(f"metric or dimension names clash: {sorted(clash or set(dimensions) & set(metrics))}")
    definitions, values = [], {}
    for name, (value, unit) in metrics.items():
        if unit not in UNITS:
            raise ValueError(f"unit {unit!r} of metric {name!r} is not a CloudWatch unit")
        if value is None:
            continue  # nothing measured this time (a dependency that did not answer)
        value = float(value)
        if not math.isfinite(value):
            continue  # NaN and infinity are not JSON; CloudWatch would reject the event
        definitions.append({"Name": name, "Unit": unit})
        values[name] = value
    document: dict = {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace or _namespace(),
                    "Dimensions": [list(dimensions)],
                    "Metrics": definitions,
                }
            ],
        },
    }
    document.update({key: str(value) for key, value in dimensions.items()})
    document.update(values)
    return document


def emit_metrics(namespace: str | None, dimensions: dict[str, str],
                 metrics: dict[str, tuple[float | None, str]]) -> None:
    """Writes one EMF record through the `payops.metrics` logger (stdout and CloudWatch).

    A value of None or NaN is left out. Raises ValueError only for a bad unit or name (a bug).
    """
    document = emf_document(namespace, dimensions, metrics)
    names = [definition["Name"] for definition in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    if names:
        logger.info("metrics %s", ",".join(names), extra={"category": "metrics", EMF_ATTR: document})
