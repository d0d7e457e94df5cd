"""Stripe's signature scheme, row by row: what is accepted and why everything else is refused."""

from __future__ import annotations

import pytest

from payments.webhooks.signature import TOLERANCE, SignatureRefused, sign, signature_verify

SECRET = "whsec_test_signature_0123456789"
BODY = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'
NOW = 1_800_000_000


def header(*parts: str) -> str:
    return ",".join(parts)


GOOD = sign(payload=BODY, secret=SECRET, timestamp=NOW)
OTHER = sign(payload=BODY, secret="whsec_another_secret_98765", timestamp=NOW)


@pytest.mark.parametrize("signed_at, parts", [
    (NOW, ["t={t}", "v1={good}"]),
    (NOW, ["t={t}", "v1={other}", "v1={good}"]),  # the secret being rolled: one of them is ours
    (NOW, ["v1={good}", "t={t}", "v0={other}"]),  # any order; v0 ignored
    (NOW, ["t={t}", "v1={good}", "scheme=unknown", "novalue"]),
    (NOW - TOLERANCE, [" t={t}", " v1={good} "]),  # at the edge of the tolerance, spaces around items
    (NOW + TOLERANCE, ["t={t}", "v1={good}"]),
])
def test_accepted(signed_at: int, parts: list[str]) -> None:
    good = sign(payload=BODY, secret=SECRET, timestamp=signed_at)
    other = sign(payload=BODY, secret="whsec_another_secret_98765", timestamp=signed_at)
    value = ",".join(part.format(t=signed_at, good=good, other=other) for part in parts)
    assert signature_verify(header=value, payload=BODY, secret=SECRET, now=NOW) == signed_at


@pytest.mark.parametrize("value, code", [
    (None, "signature_missing"),
    ("", "signature_missing"),
    (f"v1={GOOD}", "signature_malformed"),  # no timestamp
    (f"t={NOW}", "signature_malformed"),  # no v1
    (header(f"t={NOW}", f"v0={GOOD}"), "signature_malformed"),  # v0 is never checked
    (header("t=yesterday", f"v1={GOOD}"), "signature_malformed"),
    ("garbage", "signature_malformed"),
    (header(f"t={NOW}", f"v1={OTHER}"), "signature_invalid"),  # another secret
    (header(f"t={NOW}", f"v1={GOOD[:-1]}"), "signature_invalid"),  # truncated
    (header(f"t={NOW}", f"v1={GOOD.upper()}"), "signature_invalid"),
    (header(f"t={NOW + 1}", f"v1={GOOD}"), "signature_invalid"),  # the timestamp is signed too
])
def test_refused(value: str | None, code: str) -> None:
    with pytest.raises(SignatureRefused) as refused:
        signature_verify(header=value, payload=BODY, secret=SECRET, now=NOW)
    assert refused.value.code == code


def test_another_body_under_the_same_signature_is_refused() -> None:
    with pytest.raises(SignatureRefused) as refused:
        signature_verify(header=f"t={NOW},v1={GOOD}", payload=BODY + b" ", secret=SECRET, now=NOW)
    assert refused.value.code == "signature_invalid"


@pytest.mark.parametrize("age", [TOLERANCE + 1, 3600, -(TOLERANCE + 1), -86400])
def test_a_genuine_signature_outside_the_tolerance_is_refused_old_or_far_ahead(age: int) -> None:
    signed_at = NOW - age
    value = f"t={signed_at},v1={sign(payload=BODY, secret=SECRET, timestamp=signed_at)}"
    with pytest.raises(SignatureRefused) as refused:
        signature_verify(header=value, payload=BODY, secret=SECRET, now=NOW)
    assert refused.value.code == "timestamp_outside_tolerance"


def test_the_signature_matches_an_independent_hmac() -> None:
    import hashlib
    import hmac

    # What Stripe documents: HMAC-SHA256 keyed by the secret over "<t>.<raw body>".
    assert GOOD == hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
