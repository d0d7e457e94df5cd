"""Alert webhooks carry a Stripe-style signature: a receiver holding ALERT_WEBHOOK_SECRET verifies
a real delivery on a loopback server exactly as docs/runbook.md tells it to, and a forgery, a
changed body or an old replay fails that same check."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from health.services.runs import health_check_run
from health.signing import webhook_signed
from tests.health.test_notifications import redis_down

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whk-" + "0123456789abcdef" * 3
TOLERANCE = 300  # s, as the runbook advises (Stripe's own)


def receiver_verifies(raw: bytes, header: str | None, *, secret: str, now: float | None = None) -> bool:
    """A receiver's check, written from the runbook: split the header, recompute the HMAC over
    "<t>." + the raw body, compare in constant time, refuse a timestamp outside the tolerance."""
    if not header:
        return False
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts or not parts["t"].isdigit():
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + raw, hashlib.sha256).hexdigest()
    fresh = abs((now if now is not None else time.time()) - int(parts["t"])) <= TOLERANCE
    return hmac.compare_digest(expected, parts["v1"]) and fresh


def test_a_delivered_alert_verifies_with_the_secret_and_fails_when_forged(settings, webhook, eager_tasks,
                                                                          ticker) -> None:
    settings.ALERT_EMAILS = []
    settings.ALERT_WEBHOOK_URL = webhook.url
    settings.ALERT_WEBHOOK_SECRET = SECRET

    health_check_run(now=ticker(), checks=[redis_down()])
    (delivery,) = webhook.wait_for(1)
    header = delivery["headers"].get("Payops-Signature")
    raw = delivery["raw"]

    assert receiver_verifies(raw, header, secret=SECRET)
    assert json.loads(raw)["alert"]["component"] == "redis"
    # What a forger or a tampering proxy could send fails the very same check.
    assert not receiver_verifies(raw, header, secret="another-secret-" + "x" * 20)
    assert not receiver_verifies(raw.replace(b'"error"', b'"info"'), header, secret=SECRET)
    assert not receiver_verifies(raw, None, secret=SECRET)
    assert not receiver_verifies(raw, header, secret=SECRET, now=time.time() + TOLERANCE + 60)
    # The secret itself never travels.
    assert SECRET not in raw.decode() and SECRET not in json.dumps(delivery["headers"])


def test_the_signature_covers_the_timestamp() -> None:
    body, headers = webhook_signed(payload={"event": "raised"}, secret=SECRET, now=1_800_000_000)
    t, v1 = headers["Payops-Signature"].split(",")
    assert t == "t=1800000000"
    moved = f"t=1800000001,{v1}"
    assert not receiver_verifies(body, moved, secret=SECRET, now=1_800_000_001)
    assert receiver_verifies(body, headers["Payops-Signature"], secret=SECRET, now=1_800_000_001)


def test_without_a_secret_the_webhook_goes_unsigned() -> None:
    _, headers = webhook_signed(payload={"event": "raised"}, secret="")
    assert "Payops-Signature" not in headers
