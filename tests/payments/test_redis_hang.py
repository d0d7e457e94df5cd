"""Redis hanging (it accepts connections and answers nothing: stopped, or stuck in a slow
command) must not hold a payment: the service's own Redis calls time out in 0.5 s, and a
payment whose outcome is left to settlement answers 202 within its deadline while its
settlement task waits to be queued (off the request's thread; the beat sweep is the
fallback), then is settled once Redis answers."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings

from payments.models import Payment
from tests.payments.factories import make_client
from tests.support.processes import gunicorn, wait_until
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ON_CREATE = {"method": "POST", "path_prefix": "/v1/payment_intents"}


def _pay(base: str, key: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(f"{base}/api/v1/payments", timeout=60,
                             json={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa"},
                             headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex})
    return response, time.monotonic() - started


def test_a_hung_redis_holds_no_payment_not_even_one_left_to_settlement(gateway, worker, tmp_path) -> None:
    _, key = make_client()
    redis = urlsplit(settings.REDIS_URL)
    with TcpProxy((redis.hostname, redis.port)) as proxy:
        proxied = urlunsplit(redis._replace(netloc=f"127.0.0.1:{proxy.port}"))
        with gunicorn(workers=1, threads=4, log=tmp_path / "web.log", REDIS_URL=proxied,
                      PAYMENT_GATEWAY_URL=gateway.proxy_url) as base:
            assert _pay(base, key)[0].status_code == 201  # every connection made before the hang
            proxy.pause()
            try:
                paid, paid_in = _pay(base, key)
                again, again_in = _pay(base, key)  # the process no longer waits for Redis on each request
                gateway.fault("latency", delay_ms=1500, **ON_CREATE)  # every try times out: 202
                left, left_in = _pay(base, key)
            finally:
                gateway.clear()
                proxy.resume()
    assert paid.status_code == 201 and again.status_code == 201, (paid.text, again.text)
    assert again_in < 0.5, again_in
    assert left.status_code == 202 and left.json()["status"] == "unknown", left.text
    # Within the payment's deadline (plus a second of Redis's 0.5 s timeouts on the way in).
    assert paid_in < 3.0 and left_in < settings.PAYMENT_DEADLINE + 1.0, (paid_in, left_in)
    # Its settlement went out once Redis answered again, and the worker settled it.
    assert wait_until(lambda: Payment.objects.get(pk=left.json()["id"]).status == "succeeded", timeout=30)
    assert len(gateway.intents_for("payment_id", left.json()["id"])) == 1
