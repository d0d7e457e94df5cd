"""Signatures on alert webhooks, Stripe-style, so a receiver can tell ours from a forgery and
refuse a replay: `Payops-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with
ALERT_WEBHOOK_SECRET (verification: docs/runbook.md, "Verify an alert webhook")."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

HEADER = "Payops-Signature"


def webhook_signature(*, secret: str, body: bytes, timestamp: int) -> str:
    """The header's value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signed(*, payload: dict[str, Any], secret: str, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The exact bytes to send and their headers; the signature covers those bytes, so they are
    sent as they are (never re-serialised on the way). No secret: sent unsigned."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers[HEADER] = webhook_signature(secret=secret, body=body, timestamp=int(now if now is not None
                                                                                    else time.time()))
    return body, headers
