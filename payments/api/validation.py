"""Request parsing for the payment API: every refusal names the offending parameter."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 5
MAX_AMOUNT = 99_999_999  # minor units; Stripe's own ceiling for most currencies
MAX_METADATA_KEYS = 50

# ISO 4217 active codes.
CURRENCIES = frozenset(
    """aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd
    cad cdf chf clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf
    gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp
    lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab
    pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp
    szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd uyu uzs ves vnd vuv wst xaf xcd xof xpf yer zar zmw
    zwl""".split()
)

_SECRET_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")
_PM_TOKEN = re.compile(r"^pm_[A-Za-z0-9_]{1,250}$")
# A card number stands alone (no letter or digit right before or after: a hex id such as a
# UUID can hold a Luhn-valid digit run) and starts with 1-9.
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])[1-9](?:[ -]?\d){11,17}(?![0-9A-Za-z])")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.type = status, code, message, param, type


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


def _depth(value: Any, level: int = 1) -> int:
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def parse_json_body(*, content_type: str, body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}  # no body at all (a refund of everything): nothing to parse, whatever the type
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.", type="invalid_request_error")
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    try:
        text = json.dumps(data, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "invalid_json", "The body contains text that is not valid Unicode.") from None
    if "\x00" in text:
        raise ApiError(400, "invalid_json", "NUL characters are not allowed in the body.")
    if _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "invalid_json", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    if contains_card_number(json.dumps(data)):
        # We never accept raw card data: collect it with the gateway's client-side tools.
        raise ApiError(400, "card_data_not_allowed",
                       "The request contains what looks like a card number. Send a gateway payment method "
                       "token (pm_...) instead; card data must never reach this API.")
    if _SECRET_KEY.search(json.dumps(data)):
        raise ApiError(400, "secret_not_allowed",
                       "The request contains what looks like a gateway secret key; it is never accepted or stored.")
    for cvv_key in ("cvv", "cvc", "card_number", "number", "card"):
        if cvv_key in data:
            raise ApiError(400, "card_data_not_allowed", f"'{cvv_key}' is card data and is never accepted.", cvv_key)
    return data


def request_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _reject_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ApiError(400, "parameter_unknown", f"Received unknown parameter: {key}", key)


def _amount(value: Any, *, param: str = "amount") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "parameter_invalid_integer",
                       "amount must be an integer in the currency's minor unit (e.g. 1050 for 10.50).", param)
    if value <= 0:
        raise ApiError(400, "amount_too_small", "amount must be a positive integer.", param)
    if value > MAX_AMOUNT:
        raise ApiError(400, "amount_too_large", f"amount must be at most {MAX_AMOUNT}.", param)
    return value


@dataclass(frozen=True)
class PaymentRequest:
    amount: int
    currency: str
    payment_method: str
    reference: str
    metadata: dict[str, str]


def parse_payment(data: dict[str, Any]) -> PaymentRequest:
    _reject_unknown(data, {"amount", "currency", "payment_method", "reference", "metadata"})
    for required in ("amount", "currency", "payment_method"):
        if required not in data or data[required] is None:
            raise ApiError(400, "parameter_missing", f"Missing required parameter: {required}", required)
    amount = _amount(data["amount"])
    currency = data["currency"]
    if not isinstance(currency, str) or currency.lower() not in CURRENCIES:
        raise ApiError(400, "invalid_currency", "currency must be an ISO 4217 code such as 'usd'.", "currency")
    payment_method = data["payment_method"]
    if not isinstance(payment_method, str) or not _PM_TOKEN.match(payment_method):
        raise ApiError(400, "invalid_payment_method", "payment_method must be a gateway token such as 'pm_card_visa'.",
                       "payment_method")
    reference = data.get("reference")
    reference = "" if reference is None else reference
    if not isinstance(reference, str) or len(reference) > 255:
        raise ApiError(400, "invalid_reference", "reference must be a string of at most 255 characters.", "reference")
    metadata = data.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise ApiError(400, "invalid_metadata", f"metadata must be an object of at most {MAX_METADATA_KEYS} keys.",
                       "metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 40 or len(value) > 500 or not key:
            raise ApiError(400, "invalid_metadata",
                           "metadata keys (1-40 chars) and values (strings, up to 500 chars) are limited.",
                           f"metadata[{key}]")
    return PaymentRequest(amount, currency.lower(), payment_method, reference, metadata)


def parse_refund(data: dict[str, Any]) -> int | None:
    _reject_unknown(data, {"amount"})
    if data.get("amount") is None:
        return None
    return _amount(data["amount"])


_RESOURCE_ID = re.compile(r"^[a-z]{2,4}_[A-Za-z0-9]{24}$")


def is_resource_id(value: str) -> bool:
    """Our ids' shape; anything else cannot exist, so it needs no database look-up."""
    return bool(_RESOURCE_ID.match(value))


def clean_query_value(name: str, value: str, *, max_length: int = 255) -> str:
    if len(value) > max_length or "\x00" in value:
        raise ApiError(400, "invalid_parameter", f"{name} must be at most {max_length} characters, without NUL.", name)
    return value


def parse_idempotency_key(value: str | None) -> str:
    if not value:
        raise ApiError(400, "idempotency_key_missing", "Send an Idempotency-Key header with every POST.",
                       "Idempotency-Key")
    if len(value) > 255 or not _IDEMPOTENCY_KEY.match(value):
        raise ApiError(400, "idempotency_key_invalid",
                       "Idempotency-Key must be 1-255 visible ASCII characters (a UUID is a good choice).",
                       "Idempotency-Key")
    return value
