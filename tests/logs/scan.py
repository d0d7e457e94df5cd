"""Finds secrets in captured output: what the redaction filter must have removed.

Written apart from config/logs/redaction.py on purpose: a scan that reused the filter's
patterns would share its blind spots. Another engineer wires `find_secrets` into the
whole-suite scan of everything the tests logged.
"""

from __future__ import annotations

import re

# 13 to 19 digits, optionally in groups split by single spaces or dashes.
_DIGIT_RUN = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")  # not the decimals of a float
# A CVV/CVC field with a value: cvc=123, "cvv": "123", card[cvc]=123, card%5Bcvc%5D=123.
_CVV = re.compile(
    r"(?i)(?:\b|_|%5b)(?:cvc|cvv|cvc2|cvv2|csc|security_code)(?:\]|%5d)?['\"]?\s*(?:[:=]|%3d)\s*['\"]?(\d{3,4})(?!\d)"
)
_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|(?<![A-Za-z0-9])(?:sk|rk)_[A-Za-z0-9]{16,}")
# An Authorization header (or META key) followed by a value that is not a mask.
_AUTHORIZATION = re.compile(
    r"(?i)(?:http_)?(?:proxy[-_])?authorization['\"]?\s*[:=]\s*['\"]?((?:bearer|basic|token|digest)\s+\S+|[^\s'\",}\[*]+)"
)
_MASKS = ("[redacted]", "***", "[REDACTED]")


def _luhn(digits: str) -> bool:
    checksum = 0
    for position, digit in enumerate(map(int, reversed(digits))):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


def _is_card(run: str) -> bool:
    digits = run.replace(" ", "").replace("-", "")
    # Epoch ms/µs/ns (EMF's Timestamp, created_ms...) start with 1; 13-, 16- and 19-digit
    # card numbers never do.
    if run.isdigit() and run[0] == "1" and len(run) in (13, 16, 19):
        return False
    if _luhn(digits):
        return True
    groups = re.split(r"[ -]", run)
    spans = ("".join(groups[i:j]) for i in range(len(groups)) for j in range(i + 1, len(groups) + 1))
    return len(groups) > 1 and any(13 <= len(span) <= 19 and _luhn(span) for span in spans)


def find_secrets(text: str) -> list[str]:
    """Every card number, CVV value, secret key or Authorization value found, as found."""
    found = [m.group(0) for m in _DIGIT_RUN.finditer(text) if _is_card(m.group(0))]
    found += [m.group(0) for m in _CVV.finditer(text)]
    found += [m.group(0) for m in _SECRET_KEY.finditer(text)]
    found += [
        m.group(0)
        for m in _AUTHORIZATION.finditer(text)
        if not any(mask in m.group(1) for mask in _MASKS) and "redacted" not in m.group(1).lower()
    ]
    return found
