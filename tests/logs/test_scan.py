"""The secrets scan the whole suite runs over captured logs: it finds leaks, and not noise."""

from __future__ import annotations

import json

import pytest

from config.logs.emf import emf_document
from config.logs.redaction import redact_text
from tests.logs.scan import find_secrets

LEAKS = [
    "card 4242424242424242 ok",
    "card 4242 4242 4242 4242 ok",
    "card 3782-822463-10005 ok",
    "card 6205500000000000004",
    "cvc=123",
    '{"cvv": "123"}',
    "card[cvc]=123&",
    "sk_live_51HxYzAbCdEf0123456789",
    "sk_test_suite",
    "rk_live_abc123",
    "Authorization: Bearer abc.def",
    "{'HTTP_AUTHORIZATION': 'Basic dXNlcjpwYXNz'}",
    '"authorization": "Token 0123456789"',
]


@pytest.mark.parametrize("text", LEAKS)
def test_leaks_are_found(text: str) -> None:
    assert find_secrets(text), text


@pytest.mark.parametrize("text", LEAKS)
def test_nothing_is_found_once_redacted(text: str) -> None:
    assert find_secrets(redact_text(text)) == [], redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "order 4242424242424241",
        "reference 1234-5678-9012-3456",
        "timestamp 1795880280957",
        "Authorization header missing",
        "card ************4242 cvc=*** key sk_live_[redacted]",
        '{"Authorization": "[redacted]"}',
        "pk_test_publishable",
        "risk_level=high",
    ],
)
def test_harmless_text_is_not_reported(text: str) -> None:
    assert find_secrets(text) == []


def test_emf_documents_are_not_mistaken_for_cards() -> None:
    # Timestamps are 13 digits and a tenth of them pass Luhn; none may trip the scan.
    lines = [
        json.dumps(emf_document("PaymentOps", {"pool": "db"}, {"Waiting": (1, "Count")}, timestamp_ms=ts))
        for ts in range(1795880280950, 1795880281050)
    ]
    assert find_secrets("\n".join(lines)) == []


def test_every_finding_is_reported_once_each() -> None:
    text = "4242424242424242 and cvc=123 and sk_live_abc"
    assert find_secrets(text) == ["4242424242424242", "cvc=123", "sk_live_abc"]
