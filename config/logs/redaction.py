"""Redaction of card numbers, CVVs, secret keys and credentials before any handler sees a record.

`RedactionFilter` sits on every handler (see `build_logging`), so records of third-party
loggers that propagate to the root are covered as well as our own. It rewrites the
formatted message, the exception and stack text, and every `extra` value (nested dicts
and lists too), then marks the record so that a second handler does not pay again.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

# One alternation, one pass over the text: most messages contain none of these, and a
# single scan is several times cheaper than one `sub` per rule.
_PATTERN = re.compile(
    r"""
    (?P<card>(?<!\d)\d(?:[\ -]?\d){12,18}(?!\d))
    |
    (?P<cvk>(?:(?<![a-z0-9])|(?<=%5b))
        (?:cvc2?|cvv2?|csc|cvn|security[_\ -]?code|card[_\ -]?code)
        (?:\]|%5d)?["']?\s*(?:[:=]|%3a|%3d)\s*["']?)
    (?P<cvv>\d{3,4})(?!\d)
    |
    (?P<keyp>(?<![a-z0-9])(?:sk|rk)_(?:live|test)_)[a-z0-9]+
    |
    (?P<keyl>(?<![a-z0-9])(?:sk|rk|whsec)_)[a-z0-9]{16,}
    |
    (?P<ck>(?<![a-z0-9])(?:http_)?(?:set[-_])?cookie["']?\s*[:=]\s*)
    (?P<cv>"[^"\r\n]*"|'[^'\r\n]*'|[^\r\n'"}]+)
    |
    (?P<hk>(?<![a-z0-9])
        (?:(?:http_)?(?:proxy[-_])?authorization|(?:http_)?x[-_](?:api[-_]key|auth[-_]token)
          |api[-_]?key|client[-_]secret|secret[-_]key|access[-_]token|refresh[-_]token
          |password|passwd|secret)
        ["']?\s*[:=]\s*)
    (?P<hv>"[^"\r\n]*"|'[^'\r\n]*'|(?:(?:bearer|basic|token|digest)\s+)?[^\s,;'"}\]&]+)
    """,
    re.IGNORECASE | re.VERBOSE,
)

# Cheap necessary conditions for any match above: a long digit run, or one of the keywords
# (lowercased). Most strings fail both, and these scans cost a fifth of the full pattern.
_MAYBE_CARD = re.compile(r"[0-9][0-9 -]{12,}")
_MAYBE_KEYWORD = re.compile(r"cv|csc|security|code|sk_|rk_|whsec_|cookie|auth|key|secret|token|passw")

# Keys of `extra` values (dicts, nested too) whose whole value is a credential.
_SENSITIVE_KEYS = frozenset(
    {
        "authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key", "api_key",
        "apikey", "x_auth_token", "cvc", "cvv", "cvc2", "cvv2", "csc", "cvn", "security_code",
        "card_code", "password", "passwd", "secret", "secret_key", "client_secret",
        "access_token", "refresh_token", "card_number",
    }
)

_MAX_DEPTH = 6  # nested extras deeper than this are replaced, which also stops cycles

# Every attribute a LogRecord has by itself; anything else came from `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_MARK = "_payops_redacted"
_traceback_formatter = logging.Formatter()


def luhn_valid(digits: str) -> bool:
    """True when a string of digits passes the Luhn checksum (every card number does)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]


def looks_like_timestamp(run: str) -> bool:
    """Epoch ms, µs and ns (13, 16, 19 digits, years 2001 to 2286) begin with 1; cards of
    those lengths begin with 2 to 6 (Mastercard, Visa, Discover, UnionPay...), so such a
    run is a time, not a card."""
    return run[0] == "1" and len(run) in (13, 16, 19) and run.isdigit()


def _card(run: str) -> str:
    digits = re.sub(r"[ -]", "", run)
    if looks_like_timestamp(run):
        return run
    if luhn_valid(digits):
        return _mask_card(digits)
    groups = re.split(r"[ -]", run)
    if len(groups) == 1:
        return run
    # A card followed or preceded by another number ("4242 4242 4242 4242 07/29"): try
    # every contiguous span of groups that is long enough to be a card on its own.
    for start in range(len(groups)):
        for end in range(len(groups), start, -1):
            span = "".join(groups[start:end])
            if 13 <= len(span) <= 19 and luhn_valid(span):
                return " ".join(groups[:start] + [_mask_card(span)] + groups[end:])
    return run


def _quoted(value: str) -> str:
    if value[:1] in {'"', "'"}:
        return value[0] + REDACTED + value[0]
    return REDACTED


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "card":
        return _card(match.group("card"))
    if kind == "cvv":
        return match.group("cvk") + "***"
    if kind == "keyp":
        return match.group("keyp") + REDACTED
    if kind == "keyl":
        return match.group("keyl") + REDACTED
    if kind == "cv":
        return match.group("ck") + _quoted(match.group("cv"))
    if kind == "hv":
        return match.group("hk") + _quoted(match.group("hv"))
    return match.group(0)


def redact_text(text: str) -> str:
    """The text with every card number, CVV, secret key and credential value masked."""
    if _MAYBE_KEYWORD.search(text.lower()) is None and _MAYBE_CARD.search(text) is None:
        return text
    return _PATTERN.sub(_replace, text)


def redact_value(value: Any, depth: int = 0) -> Any:
    """A redacted copy of an `extra` value; the caller's own objects are never mutated."""
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        # Numbers stay numbers: epoch-millisecond timestamps (EMF's Timestamp) are 13
        # digits and a tenth of them pass Luhn; card numbers travel as strings.
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {
            key: REDACTED if _is_sensitive_key(key) else redact_value(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(item, depth + 1) for item in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    # Other objects (a request, a model) keep their type for handlers that need it; the
    # JSON formatter redacts their text when it serialises them.
    return value


def _is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    normal = key.lower().replace("-", "_")
    if normal.startswith("http_"):
        normal = normal[5:]
    return normal in _SENSITIVE_KEYS


class RedactionFilter(logging.Filter):
    """Masks secrets in a record in place; always lets the record through, never raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False):
            return True
        try:
            redact_record(record)
        except Exception:  # a logging call must never fail because of redaction
            record.msg, record.args = "[log record dropped: redaction failed]", None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        setattr(record, _MARK, True)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Freezes the message (args applied) and masks it, the traceback and every extra."""
    try:
        message = record.getMessage()
    except Exception:  # bad %-args: keep the template, as logging itself would report it
        message = str(record.msg)
    record.msg, record.args = redact_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = _traceback_formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    for key in record.__dict__.keys() - _STANDARD:
        if key.startswith("_"):
            continue
        value = record.__dict__[key]
        record.__dict__[key] = REDACTED if _is_sensitive_key(key) else redact_value(value)
