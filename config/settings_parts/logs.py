"""What the logging settings must hold to: values CloudWatch Logs accepts."""

from __future__ import annotations

from config.env import require
from config.logs.cloudwatch import RETENTION_DAYS


def cloudwatch_retention_check(*, days: int) -> None:
    """Refuses a retention CloudWatch would reject; 0 leaves the log group's own policy alone."""
    require(
        days == 0 or days in RETENTION_DAYS,
        f"CLOUDWATCH_RETENTION_DAYS must be 0 or one of {', '.join(map(str, RETENTION_DAYS))}",
    )
