"""Settlement of unknown outcomes, the sweep, the admin and the key command."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from payments.models import ApiClient, Payment
from payments.services.api_keys import api_client_authenticate
from payments.services.settlement import payment_settle, payment_settle_due
from tests.payments.factories import Api, make_client
from tests.support.processes import ROOT, service_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_unknown_payment_is_settled_to_the_gateways_truth(gateway) -> None:
    _, key = make_client()
    gateway.fault("truncate", count=1, method="POST", path_prefix="/v1/payment_intents")
    response = Api(key).pay()
    assert response.status_code == 202
    payment = Payment.objects.get(pk=response.json()["id"])
    assert payment.status == "unknown" and payment.next_settle_at is not None
    settled = payment_settle(payment_id=payment.id)
    assert settled.status == "succeeded"
    assert settled.settle_count == 1
    assert len(gateway.intents_for("payment_id", payment.id)) == 1
    # The client's repeat now gets the final answer.
    again = Api(key).pay(idempotency_key=Payment.objects.get(pk=payment.id).idempotency_key)
    assert again.status_code == 201 and again.json()["status"] == "succeeded"


def test_still_unknown_backs_off(gateway, settings) -> None:
    _, key = make_client()
    gateway.fault("malformed", method="POST", path_prefix="/v1/payment_intents")  # until cleared
    payment = Payment.objects.get(pk=Api(key).pay().json()["id"])
    first_due = payment.next_settle_at
    payment_settle(payment_id=payment.id)
    payment.refresh_from_db()
    assert payment.status == "unknown"
    assert payment.next_settle_at > first_due
    gateway.clear()
    assert payment_settle(payment_id=payment.id).status == "succeeded"
    assert len(gateway.intents_for("payment_id", payment.id)) == 1


def test_sweep_settles_stale_processing_and_expires_never_sent(gateway, settings) -> None:
    client, key = make_client()
    stuck = Payment.objects.create(client=client, idempotency_key="a", request_hash="x", amount=700, currency="usd",
                                   payment_method="pm_card_visa", status="processing")
    Payment.objects.filter(pk=stuck.pk).update(updated=timezone.now() - timedelta(minutes=5))
    never = Payment.objects.create(client=client, idempotency_key="b", request_hash="x", amount=700, currency="usd",
                                   payment_method="pm_card_visa", status="pending")
    Payment.objects.filter(pk=never.pk).update(created=timezone.now() - timedelta(hours=1))
    result = payment_settle_due()
    assert result == {"queued": 1, "refunds_queued": 0, "expired": 1}
    never.refresh_from_db()
    assert never.status == "failed" and never.failure_code == "abandoned"
    # The queued settlement is what a worker runs; a worker of the session may already be on
    # it (then this call leaves it alone), so run it here until the payment is settled.
    deadline = time.monotonic() + 15
    while payment_settle(payment_id=stuck.pk).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    stuck.refresh_from_db()
    assert stuck.status == "succeeded"
    assert len(gateway.intents_for("payment_id", stuck.pk)) == 1


def test_create_api_key_command_prints_the_key_once_and_stores_a_hash() -> None:
    result = subprocess.run([sys.executable, "manage.py", "create_api_key", "shop-frontend"], cwd=ROOT,
                            env=service_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    raw_key = result.stdout.strip().splitlines()[-1]
    assert raw_key.startswith("pok_")
    client = ApiClient.objects.get(name="shop-frontend")
    assert raw_key not in client.key_hash and len(client.key_hash) == 64
    assert api_client_authenticate(raw_key=raw_key) == client
    again = subprocess.run([sys.executable, "manage.py", "create_api_key", "shop-frontend"], cwd=ROOT,
                           env=service_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "exists" in again.stderr


def test_admin_shows_unknown_outcomes_and_settles_them(gateway, client) -> None:
    api_client, key = make_client()
    gateway.fault("truncate", count=1, method="POST", path_prefix="/v1/payment_intents")
    payment_id = Api(key).pay(amount=4500).json()["id"]
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-123456789")
    client.force_login(admin)
    page = client.get("/admin/payments/payment/")
    assert page.status_code == 200
    assert b"Outcome unknown" in page.content and b"45.00" in page.content
    response = client.post("/admin/payments/payment/", {"action": "settle_now", "_selected_action": [payment_id]},
                           follow=True)
    assert b"1 payment(s) settled" in response.content
    assert Payment.objects.get(pk=payment_id).status == "succeeded"
    from django.contrib.admin.models import LogEntry

    entry = LogEntry.objects.get(object_id=payment_id)
    assert entry.user == admin and "unknown -> succeeded" in entry.get_change_message()
    detail = client.get(f"/admin/payments/payment/{payment_id}/change/")
    assert detail.status_code == 200 and b"bad_response" in detail.content  # the attempts, read-only
