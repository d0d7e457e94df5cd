"""Gateway events as the gateway signs and sends them, for webhook tests."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from django.test import Client

from payments.webhooks.signature import sign

SECRET = "whsec_test_" + "5f0c3a9e1b7d4c2a8e6f0b3d"
URL = "/webhooks/gateway"


def make_event(type: str = "payment_intent.succeeded", obj: dict[str, Any] | None = None,
               **fields: Any) -> dict[str, Any]:
    obj = obj if obj is not None else {"id": f"pi_{uuid.uuid4().hex[:14]}", "object": "payment_intent",
                                       "status": "succeeded", "metadata": {}}
    return {"id": f"evt_{uuid.uuid4().hex[:14]}", "object": "event", "api_version": "2017-08-15",
            "created": int(time.time()), "livemode": False, "type": type, "data": {"object": obj}, **fields}


def signature_for(body: bytes, *, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    return f"t={at},v1={sign(payload=body, secret=secret, timestamp=at)}"


def deliver(client: Client, event: dict[str, Any] | bytes, *, secret: str = SECRET, at: int | None = None,
            signature: str | None = "sign"):  # type: ignore[no-untyped-def]
    """POSTs the event as the gateway does: its bytes, signed (unless `signature` says otherwise)."""
    body = event if isinstance(event, bytes) else json.dumps(event, indent=2, sort_keys=True).encode()
    headers = {}
    if signature == "sign":
        headers["HTTP_STRIPE_SIGNATURE"] = signature_for(body, secret=secret, at=at)
    elif signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    return client.generic("POST", URL, body, content_type="application/json; charset=utf-8", **headers)
