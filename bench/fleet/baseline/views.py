"""The plain view: what the incident's code looked like, minus the incident."""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from bench.fleet.baseline.models import Charge

stripe.api_key = settings.STRIPE_API_KEY
stripe.api_base = settings.STRIPE_API_BASE
stripe.enable_telemetry = False


@csrf_exempt
def create_payment(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    intent = stripe.PaymentIntent.create(amount=data["amount"], currency=data["currency"],
                                         payment_method=data["payment_method"], confirm=True)
    charge = Charge.objects.create(gateway_id=intent.id, amount=intent.amount, currency=intent.currency,
                                   status=intent.status)
    return JsonResponse({"id": charge.id, "gateway_id": intent.id, "status": intent.status}, status=201)
