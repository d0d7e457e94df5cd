"""Stripe's webhook signature: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…][,v0=…]`,
each v1 an HMAC-SHA256 of f"{t}.{raw body}" with the endpoint's signing secret."""

from __future__ import annotations

import hashlib
import hmac

# s between the gateway signing an event and us accepting it (Stripe's libraries use the same).
TOLERANCE = 300
SCHEME = "v1"  # v0 and any other scheme are test-mode leftovers Stripe tells us to ignore


class SignatureRefused(Exception):
    """Why a delivery is not the gateway's (a reason code for the 400 and the refusal counts)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def sign(*, payload: bytes, secret: str, timestamp: int) -> str:
    """The v1 signature the gateway sends for this body at this time."""
    return hmac.new(secret.encode(), b"%d." % timestamp + payload, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit():
                raise SignatureRefused("signature_malformed", "The Stripe-Signature timestamp is not a number.")
            timestamp = int(value)
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureRefused("signature_malformed",
                               "The Stripe-Signature header has no timestamp or no v1 signature.")
    return timestamp, signatures


def signature_verify(*, header: str | None, payload: bytes, secret: str, now: float,
                     tolerance: int = TOLERANCE) -> int:
    """The signed timestamp if one v1 signature is the secret's for this body and the
    timestamp is within `tolerance` s of `now`; SignatureRefused with the reason otherwise."""
    if not header:
        raise SignatureRefused("signature_missing", "The Stripe-Signature header is missing.")
    timestamp, signatures = _parse(header)
    expected = sign(payload=payload, secret=secret, timestamp=timestamp)
    # Every candidate is compared in constant time, and all of them: during a secret's
    # rotation the gateway signs with the old and the new one.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureRefused("signature_invalid", "No v1 signature matches the payload.")
    # Too old is a replay. Too far ahead as well: the signature would stay acceptable until
    # its own time plus the tolerance, a replay window of any length, while a real
    # gateway's clock is seconds from ours.
    if abs(now - timestamp) > tolerance:
        raise SignatureRefused("timestamp_outside_tolerance",
                               f"The signature's timestamp is more than {tolerance} s from our clock.")
    return timestamp
