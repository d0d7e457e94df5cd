"""The Django floor: the least a Django view can do for a tracked payment with the stack this
product must use. Per payment: the row INSERTed through the ORM under the client's
Idempotency-Key before the call, one call on a shared `requests.Session` (a pooled
HTTPAdapter, connect/read timeouts) with that key, and the row UPDATEd with the answer;
PostgreSQL through psycopg 3 and Django's native pool, in the same gunicorn as ours.

What it leaves out, which ours does: API keys, the rate limit, a repeat's replay (a repeated
key is a 409 here, nothing kept), attempt rows, retries and the deadline, the breaker and the
concurrency limit, answer classification, logging, settlement, health publishing. Ours
against it is what those cost (docs/reliability.md, "1. Load").

    gunicorn bench.fleet.baseline.django_floor:application
"""

from __future__ import annotations

import json
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.fleet.baseline.settings"
os.environ["BENCH_DJANGO_FLOOR"] = "1"  # settings: Django's native pool, this module's URLs

import requests  # noqa: E402 - after the settings module is chosen
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import IntegrityError  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

_threads = int(os.environ.get("GUNICORN_THREADS", "8"))
_gateway = os.environ["PAYMENT_GATEWAY_URL"].rstrip("/")
_session = requests.Session()
_session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=_threads, pool_block=True))
_session.headers["Authorization"] = f"Bearer {os.environ['PAYMENT_GATEWAY_API_KEY']}"
TIMEOUT = (3.0, 10.0)  # s: connect, read


@csrf_exempt
def create_payment(request: HttpRequest) -> JsonResponse:
    from bench.fleet.baseline.models import RecordedCharge

    data = json.loads(request.body)
    key = request.headers.get("Idempotency-Key", "")
    try:
        charge = RecordedCharge.objects.create(idempotency_key=key, amount=data["amount"],
                                               currency=data["currency"], status="processing")
    except IntegrityError:
        return JsonResponse({"error": "repeated Idempotency-Key"}, status=409)
    answer = _session.post(f"{_gateway}/v1/payment_intents", timeout=TIMEOUT, headers={"Idempotency-Key": key},
                           data={"amount": data["amount"], "currency": data["currency"],
                                 "payment_method": data["payment_method"], "confirm": "true"})
    intent = answer.json()
    RecordedCharge.objects.filter(pk=charge.pk, status="processing").update(status=intent["status"],
                                                                            gateway_id=intent["id"])
    return JsonResponse({"id": charge.pk, "gateway_id": intent["id"], "status": intent["status"]}, status=201)


urlpatterns = [path("api/v1/payments", create_payment)]
application = get_wsgi_application()
