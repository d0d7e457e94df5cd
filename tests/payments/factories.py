"""Small builders for payment tests."""

from __future__ import annotations

import uuid
from typing import Any

from django.test import Client

from payments.models import ApiClient
from payments.services.api_keys import api_key_create

# Every raw key the suite created: the final scan proves none was stored or logged.
ISSUED_KEYS: list[str] = []


def make_client(name: str | None = None) -> tuple[ApiClient, str]:
    client, raw_key = api_key_create(name=name or f"client-{uuid.uuid4().hex[:8]}")
    ISSUED_KEYS.append(raw_key)
    return client, raw_key


class Api:
    """The payment API as a client sees it."""

    def __init__(self, key: str, http: Client | None = None) -> None:
        self.key = key
        self.http = http or Client()

    def headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}
        if idempotency_key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
        return headers

    def pay(self, *, idempotency_key: str | None = None, **body: Any):  # type: ignore[no-untyped-def]
        payload = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", **body}
        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        return self.http.post("/api/v1/payments", payload, content_type="application/json", **self.headers(key))

    def post_raw(self, path: str, body: bytes | str, *, content_type: str = "application/json",
                 idempotency_key: str | None = "k1"):  # type: ignore[no-untyped-def]
        return self.http.generic("POST", path, body, content_type=content_type, **self.headers(idempotency_key))

    def refund(self, payment_id: str, *, idempotency_key: str | None = None, **body: Any):  # type: ignore[no-untyped-def]
        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        return self.http.post(f"/api/v1/payments/{payment_id}/refunds", body, content_type="application/json",
                              **self.headers(key))

    def get(self, path: str, **params: Any):  # type: ignore[no-untyped-def]
        return self.http.get(path, params, **self.headers(None))
