"""One JSON object per log line, so CloudWatch Logs Insights and humans with jq can query it."""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from config.logs.redaction import redact_text

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# The attribute `config.logs.emf.emit_metrics` puts its Embedded Metric Format document in.
EMF_ATTR = "emf"


def _default(value: object) -> str:
    # Objects passed in `extra` (a request, a model) are serialised by their text, which
    # the redaction filter could not see: redact it here.
    return redact_text(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str = "web") -> None:
        super().__init__()
        self.role = role
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "role": self.role,
            "host": self.host,
            "pid": os.getpid(),
        }
        emf = None
        for key, value in record.__dict__.items():
            if key == EMF_ATTR and isinstance(value, dict):
                emf = value
            elif key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info or record.exc_text:
            if record.exc_info and record.exc_info[0]:
                payload["exc_type"] = record.exc_info[0].__name__
            # exc_text is the traceback the redaction filter already masked; prefer it.
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]  # exc_info[0] checked above
        if record.stack_info:
            payload["stack"] = record.stack_info
        if emf is not None:
            # EMF wants `_aws`, the dimensions and the values at the top level of the event.
            payload.update(emf)
        return json.dumps(payload, default=_default, separators=(",", ":"))
