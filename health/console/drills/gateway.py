"""The payment-timeout drill: only against the sandbox gateway, which it makes slow for a while."""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests
from django.conf import settings

from health.console.drills.limits import SANDBOX_TIMEOUT, DrillRefused, Progress


# --- Payment timeout --------------------------------------------------------------------------
def gateway_is_sandbox(base_url: str | None = None) -> bool:
    """True when the payment gateway is this project's sandbox proxy (its control API answers)."""
    url = (base_url or settings.PAYMENT_GATEWAY_URL).rstrip("/") + "/_sandbox/health"
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(url, timeout=SANDBOX_TIMEOUT)
        return response.status_code == 200 and response.json().get("ok") is True
    except (requests.RequestException, ValueError):
        return False


def payment_timeout_refusal() -> str | None:
    """Why the payment timeout drill may not run here, or None. It needs the sandbox's fault
    injection, so it is refused against any other gateway (and so always in production,
    unless production points at a sandbox)."""
    if gateway_is_sandbox():
        return None
    mode = "production mode" if not settings.DEBUG else "development mode"
    return (f"refused in {mode}: the payment gateway ({settings.PAYMENT_GATEWAY_URL}) is not the sandbox, "
            "so no slow answer can be injected and a real charge would be made")


def payment_timeout(*, timeouts: int, amount: int, progress: Progress) -> dict[str, Any]:
    """A real payment through the service while the sandbox holds the gateway's answers longer
    than PAYMENT_TIMEOUT for its first `timeouts` tries: the retries keep the idempotency key,
    the outcome is recorded `unknown` when every try timed out, and settlement then asks the
    gateway and finds the charge (no second one)."""
    from payments.gateway import get_gateway
    from payments.models import ApiClient, Payment, PaymentAttempt, PaymentStatus
    from payments.services.api_keys import api_key_create
    from payments.services.idempotency import idempotency_claim, idempotency_release
    from payments.services.settlement import payment_settle
    from payments.services.submit import payment_create, payment_submit

    refusal = payment_timeout_refusal()
    if refusal:
        raise DrillRefused(refusal)
    gateway = get_gateway()
    base = gateway.config.base_url.rstrip("/")
    attempts = settings.PAYMENT_RETRY_ATTEMPTS
    timeouts = max(1, min(timeouts, attempts))
    delay_ms = int(settings.PAYMENT_TIMEOUT * 1000) + 1000
    progress(0, 4, "injecting the slow answers at the sandbox")
    client = ApiClient.objects.filter(name="console-drills").first()
    if client is None:
        client, _ = api_key_create(name="console-drills")  # the key is never needed
    with requests.Session() as control:
        control.trust_env = False
        rule = control.post(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT, json={
            "kind": "latency", "count": timeouts, "method": "POST", "path_prefix": "/v1/payment_intents",
            "delay_ms": delay_ms,
        })
        rule.raise_for_status()
        rule_id = rule.json().get("id")
        try:
            progress(1, 4, f"paying: every try waits up to {settings.PAYMENT_TIMEOUT:.1f} s")
            key = f"drill-{uuid.uuid4().hex}"
            record = idempotency_claim(client=client, key=key, endpoint="payments",
                                       request_hash=key).record
            payment = payment_create(
                client=client, record=record, amount=amount, currency="usd", payment_method="pm_card_visa",
                reference=f"console drill {key[-8:]}", metadata={"drill": "payment_timeout"},
            )
            idempotency_release(record=record)
            clock = time.perf_counter()
            submitted = payment_submit(payment_id=payment.id)
            submit_ms = round((time.perf_counter() - clock) * 1000, 1)
        finally:
            left = control.get(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT).json().get("faults", [])
            if any(f.get("id") == rule_id for f in left):
                control.delete(f"{base}/_sandbox/faults", timeout=SANDBOX_TIMEOUT)
    progress(2, 4, f"outcome recorded: {submitted.status}")
    after_submit = {"status": submitted.status, "failure_code": submitted.failure_code,
                    "attempt_count": submitted.attempt_count}
    settled = None
    if submitted.status in (PaymentStatus.UNKNOWN, PaymentStatus.PROCESSING):
        progress(3, 4, "settling: asking the gateway what happened")
        settled = payment_settle(payment_id=payment.id)
    final = Payment.objects.get(pk=payment.id)
    progress(4, 4, f"final status: {final.status}")
    return {
        "payment_id": final.id, "amount": amount, "currency": "usd",
        "config": {"timeout_s": settings.PAYMENT_TIMEOUT, "connect_timeout_s": settings.PAYMENT_CONNECT_TIMEOUT,
                   "retry_attempts": attempts, "retry_delay_s": settings.PAYMENT_RETRY_DELAY,
                   "deadline_s": settings.PAYMENT_DEADLINE},
        "fault": {"kind": "latency", "tries_held": timeouts, "delay_ms": delay_ms},
        "submit_ms": submit_ms, "after_submit": after_submit,
        "settled": settled is not None, "final_status": final.status, "gateway_id": final.gateway_id,
        "attempts": [
            {"number": a.number, "operation": a.operation, "outcome": a.outcome, "duration_ms": round(a.duration_ms, 1),
             "http_status": a.http_status, "error": a.error}
            for a in PaymentAttempt.objects.filter(payment_id=final.id).order_by("number")
        ],
    }


def sandbox_stats(base_url: str) -> dict[str, Any] | None:
    try:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(base_url.rstrip("/") + "/_sandbox/stats", timeout=SANDBOX_TIMEOUT)
        return response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
