"""The redaction filter: what must be masked is, what must stay stays."""

from __future__ import annotations

import io
import json
import logging

import pytest

from config.logs.formatter import JsonFormatter
from config.logs.redaction import REDACTED, RedactionFilter, luhn_valid, redact_text, redact_value
from tests.logs.scan import find_secrets
from tests.logs.support import isolated_logger

# Stripe's test numbers: all pass Luhn.
VISA = "4242424242424242"
AMEX = "378282246310005"
DISCOVER_19 = "6011000990139424"  # 16 digits
UNIONPAY_19 = "6205500000000000004"
DINERS_14 = "30569309025904"
VISA_13 = "4222222222222"


@pytest.mark.parametrize("number", [VISA, AMEX, DISCOVER_19, UNIONPAY_19, DINERS_14, VISA_13])
def test_test_card_numbers_pass_luhn(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"card {VISA} declined", "card ************4242 declined"),
        ("card 4242 4242 4242 4242 declined", "card ************4242 declined"),
        ("card 4242-4242-4242-4242 declined", "card ************4242 declined"),
        ("amex 3782 822463 10005", "amex ***********0005"),
        (f"unionpay {UNIONPAY_19}.", "unionpay ***************0004."),
        (f"visa13={VISA_13}", "visa13=*********2222"),
        # a card followed by an expiry-like number in the same spaced run
        ("4242 4242 4242 4242 0729", "************4242 0729"),
        (f'{{"number": "{VISA}"}}', '{"number": "************4242"}'),
    ],
)
def test_luhn_valid_numbers_are_masked_keeping_last_four(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4242424242424241 shipped",  # 16 digits, Luhn fails
        "reference 1234-5678-9012-3456",  # Luhn fails
        "ids 12345678901 and 123456",  # too short
        "batch 42424242424242424242424",  # 23 digits: not card-shaped
        "at 1795880280957 ms",  # epoch milliseconds (passes Luhn) stay readable
        "pay_4aB9x2LmQ7rT0vW3yZ5cD8eF paid 1999 EUR",
        "2026-11-28T15:34:18.123+00:00 took 5000 ms",
    ],
)
def test_other_numbers_are_kept(text: str) -> None:
    assert redact_text(text) == text


def test_the_kept_timestamp_would_pass_luhn() -> None:
    assert luhn_valid("1795880280957")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cvc=123", "cvc=***"),
        ("CVV: 4567", "CVV: ***"),
        ('{"cvv": "123", "exp_month": 12}', '{"cvv": "***", "exp_month": 12}'),
        ("{'cvc': '999'}", "{'cvc': '***'}"),
        ("card[cvc]=123&card[exp_year]=2030", "card[cvc]=***&card[exp_year]=2030"),
        ("card%5Bcvc%5D=123&x=1", "card%5Bcvc%5D=***&x=1"),
        ("security_code=321", "security_code=***"),
        ('"cvc": 123', '"cvc": ***'),
    ],
)
def test_cvv_values_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk_live_51HxYzAbCdEf0123456789", f"key sk_live_{REDACTED}"),
        ("key=sk_test_suite", f"key=sk_test_{REDACTED}"),
        ("restricted rk_live_abcDEF123", f"restricted rk_live_{REDACTED}"),
        ("restricted rk_abcdefghijklmnop1234", f"restricted rk_{REDACTED}"),
        ("webhook whsec_abcdefghijklmnopqrstuv", f"webhook whsec_{REDACTED}"),
    ],
)
def test_secret_keys_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    ["risk_level=high", "task_test_run finished", "pk_test_abc is publishable", "desk_live_view"],
)
def test_words_that_contain_key_prefixes_are_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNz, next", f"authorization={REDACTED}, next"),
        ("{'HTTP_AUTHORIZATION': 'Bearer tok_123', 'PATH_INFO': '/x'}",
         f"{{'HTTP_AUTHORIZATION': '{REDACTED}', 'PATH_INFO': '/x'}}"),
        ('{"Authorization": "Bearer tok"}', f'{{"Authorization": "{REDACTED}"}}'),
        ("Cookie: sessionid=abc; csrftoken=def", f"Cookie: {REDACTED}"),
        ("'HTTP_COOKIE': 'sessionid=abc; csrftoken=def'", f"'HTTP_COOKIE': '{REDACTED}'"),
        ("X-Api-Key: k_123456", f"X-Api-Key: {REDACTED}"),
        ("GET /v1/x?api_key=abc123&page=2", f"GET /v1/x?api_key={REDACTED}&page=2"),
        ("password=hunter2 user=bob", f"password={REDACTED} user=bob"),
    ],
)
def test_credential_headers_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_prose_about_headers_is_kept() -> None:
    text = "request had no Authorization header and no cookie"
    assert redact_text(text) == text


def test_nested_extra_values_are_redacted_without_touching_the_callers_objects() -> None:
    original = {
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k1", "Accept": "application/json"},
        "card": {"number": "4242 4242 4242 4242", "cvc": "123", "exp_year": 2030},
        "history": [{"note": "used sk_live_abcdef123"}, ("cookie", "Cookie: a=b")],
    }
    snapshot = json.dumps(original)
    redacted = redact_value(original)
    assert redacted == {
        "headers": {"Authorization": REDACTED, "X-Api-Key": REDACTED, "Accept": "application/json"},
        "card": {"number": "************4242", "cvc": REDACTED, "exp_year": 2030},
        "history": [{"note": f"used sk_live_{REDACTED}"}, ["cookie", f"Cookie: {REDACTED}"]],
    }
    assert json.dumps(original) == snapshot


def test_deeply_nested_or_cyclic_values_do_not_break_logging() -> None:
    cyclic: dict = {"a": 1}
    cyclic["self"] = cyclic
    assert redact_value(cyclic)["self"]["self"]["self"]["self"]["self"]["self"] == REDACTED


def _logged(*args: object, exc: BaseException | None = None, extra: dict | None = None) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactionFilter())
    logger = isolated_logger("redaction", handler)
    if exc is not None:
        try:
            raise exc
        except type(exc):
            logger.exception(*args, extra=extra)
    else:
        logger.info(*args, extra=extra)
    return json.loads(stream.getvalue())


def test_the_filter_masks_args_extras_and_the_traceback() -> None:
    record = _logged(
        "charging %s with %s", "4242 4242 4242 4242", "sk_live_abcdef123",
        exc=ValueError("card 4000056655665556 cvc=123 rejected"),
        extra={"request_headers": {"Authorization": "Bearer secret-token"}, "authorization": "Basic x"},
    )
    assert record["message"] == f"charging ************4242 with sk_live_{REDACTED}"
    assert record["request_headers"] == {"Authorization": REDACTED}
    assert record["authorization"] == REDACTED
    assert "************5556 cvc=***" in record["exc"]
    assert record["exc_type"] == "ValueError"
    assert find_secrets(json.dumps(record)) == []


def test_objects_in_extra_are_redacted_when_serialised() -> None:
    class Request:
        def __str__(self) -> str:
            return "<Request GET /pay?card=4242424242424242>"

    record = _logged("request", extra={"request": Request()})
    assert record["request"] == "<Request GET /pay?card=************4242>"


def test_a_record_is_redacted_once_and_every_handler_sees_the_masked_text() -> None:
    first, second = io.StringIO(), io.StringIO()
    handlers = []
    for stream in (first, second):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(RedactionFilter())
        handlers.append(handler)
    isolated_logger("twice", *handlers).info("cvc=%s", "123")
    assert first.getvalue() == second.getvalue() == "cvc=***\n"


def test_a_broken_format_string_still_logs_and_never_raises() -> None:
    record = _logged("two args %s %s", "only one")
    assert record["message"] == "two args %s %s"
