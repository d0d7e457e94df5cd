"""`POST /webhooks/gateway`: the gateway's signed events. Authenticated by the signature,
not by an API key or a session; answered as soon as the event is stored."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from config.errors import error_response, service_unavailable
from payments.webhooks import services

# s the gateway is told to wait while no signing secret is configured (Stripe retries on its own schedule).
DISABLED_RETRY_AFTER = 300
SIGNATURE_CODES = frozenset({"signature_missing", "signature_malformed", "signature_invalid",
                             "timestamp_outside_tolerance"})


def _refused(refused: services.DeliveryRefused) -> HttpResponse:
    return error_response(400, type="invalid_request_error", code=refused.code, message=refused.message,
                          param="Stripe-Signature" if refused.code in SIGNATURE_CODES else None)


@csrf_exempt
def gateway_webhook(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return error_response(405, type="invalid_request_error", code="method_not_allowed",
                              message="Gateway events are sent with POST.", headers={"Allow": "POST"})
    try:
        body = request.body
    except RequestDataTooBig:
        return _refused(services.delivery_refused(code="payload_too_large",
                                                  message="The body is larger than any gateway event."))
    try:
        services.gateway_event_receive(payload=body, signature=request.headers.get("Stripe-Signature"))
    except services.WebhooksDisabled:
        return service_unavailable(code="webhooks_not_configured", retry_after=DISABLED_RETRY_AFTER,
                                   message="Gateway events are not accepted: no signing secret is configured.")
    except services.DeliveryRefused as refused:
        return _refused(refused)
    # A repeat delivery is answered the same way: anything but 2xx makes the gateway send it again.
    return JsonResponse({"received": True})
