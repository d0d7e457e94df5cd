"""The OpenAPI 3 description of /api/v1/ (served at /api/v1/openapi.json)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from payments.api.validation import CURRENCIES, MAX_AMOUNT
from payments.models import PaymentStatus, RefundStatus

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {"type": "string"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"]},
            },
        }
    },
}
_PAYMENT = {
    "type": "object",
    "required": ["id", "status", "amount", "currency", "reference", "gateway_id", "failure_code",
                 "failure_message", "next_action", "attempts", "created", "updated"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["payment"]},
        "status": {"type": "string", "enum": PaymentStatus.values},
        "amount": {"type": "integer"},
        "amount_refunded": {"type": "integer"},
        "currency": {"type": "string"},
        "reference": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "gateway_id": {"type": ["string", "null"]},
        "failure_code": {"type": ["string", "null"]},
        "failure_message": {"type": ["string", "null"]},
        "next_action": {
            "type": ["object", "null"],
            "description": "Null unless status is requires_action: what the customer must do at the gateway "
                           "(the gateway's next_action, with the intent's client_secret for its SDK).",
            "properties": {"type": {"type": "string"}, "client_secret": {"type": ["string", "null"]}},
        },
        "attempts": {"type": "integer"},
        "refunds": {"type": "array", "items": {"$ref": "#/components/schemas/Refund"}},
        "created": {"type": "string", "format": "date-time"},
        "updated": {"type": "string", "format": "date-time"},
    },
}
_REFUND = {
    "type": "object",
    "required": ["id", "payment", "amount", "status"],
    "properties": {
        "id": {"type": "string"}, "object": {"type": "string"}, "payment": {"type": "string"},
        "amount": {"type": "integer"}, "status": {"type": "string", "enum": RefundStatus.values},
        "gateway_id": {"type": ["string", "null"]}, "failure_code": {"type": ["string", "null"]},
        "failure_message": {"type": ["string", "null"]}, "created": {"type": "string"}, "updated": {"type": "string"},
    },
}


def _errors(*codes: int) -> dict:
    descriptions = {400: "Invalid request", 401: "Missing or invalid API key", 404: "Not found",
                    405: "Method not allowed", 409: "Idempotency conflict", 413: "Body too large",
                    415: "Body is not JSON", 429: "Rate limited", 503: "A dependency is unavailable; see Retry-After"}
    return {str(c): {"description": descriptions[c], "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for c in codes}


_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}}
_NO_NUL = "^[^\\x00]*$"  # PostgreSQL text cannot hold NUL; the API refuses it
_ID_PATTERN = "^pay_[A-Za-z0-9]{24}$"
_ID = {"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string", "pattern": _ID_PATTERN}}
_REFUND_ID = {"name": "refund_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^ref_[A-Za-z0-9]{24}$"}}
_REFUND_LIST = {"type": "object", "required": ["data", "has_more"],
                "properties": {"object": {"type": "string"}, "url": {"type": "string"}, "has_more": {"type": "boolean"},
                               "data": {"type": "array", "items": {"$ref": "#/components/schemas/Refund"}}}}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "Payment Ops API", "version": "1.0.0",
             "description": "Payments through a Stripe-compatible gateway, idempotent and resilient."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {"Error": _ERROR, "Payment": _PAYMENT, "Refund": _REFUND},
    },
    "paths": {
        "/api/v1/payments": {
            "post": {
                "operationId": "createPayment",
                "parameters": [_IDEMPOTENCY],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "required": ["amount", "currency", "payment_method"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT},
                        "currency": {"type": "string", "enum": sorted(CURRENCIES | {c.upper() for c in CURRENCIES})},
                        "payment_method": {"type": "string", "pattern": "^pm_[A-Za-z0-9_]{1,250}$"},
                        "reference": {"type": ["string", "null"], "maxLength": 255, "pattern": _NO_NUL},
                        "metadata": {"type": ["object", "null"], "maxProperties": 50,
                                     "propertyNames": {"minLength": 1, "maxLength": 40, "pattern": _NO_NUL},
                                     "additionalProperties": {"type": "string", "maxLength": 500,
                                                              "pattern": _NO_NUL}},
                    }}}}},
                "responses": {
                    "201": {"description": "The payment, in a final state",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payment"}}}},
                    "202": {"description": "Accepted; the outcome is still being settled",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payment"}}}},
                    **_errors(400, 401, 405, 409, 413, 415, 429, 503),
                },
            },
            "get": {
                "operationId": "listPayments",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": PaymentStatus.values}},
                    {"name": "reference", "in": "query",
                     "schema": {"type": "string", "maxLength": 255, "pattern": "^[^\\x00]*$"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "starting_after", "in": "query", "schema": {"type": "string", "pattern": _ID_PATTERN}},
                ],
                "responses": {
                    "200": {"description": "A page of payments, newest first", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["data", "has_more"],
                        "properties": {"object": {"type": "string"}, "url": {"type": "string"},
                                       "has_more": {"type": "boolean"},
                                       "data": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}}}}}}},
                    **_errors(400, 401, 429, 503),
                },
            },
        },
        "/api/v1/payments/{payment_id}": {
            "get": {
                "operationId": "getPayment",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "The payment",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payment"}}}},
                    **_errors(401, 404, 429, 503),
                },
            }
        },
        "/api/v1/payments/{payment_id}/refunds": {
            "get": {
                "operationId": "listRefunds",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "The payment's refunds, newest first",
                            "content": {"application/json": {"schema": _REFUND_LIST}}},
                    **_errors(401, 404, 429, 503),
                },
            },
            "post": {
                "operationId": "createRefund",
                "parameters": [_ID, _IDEMPOTENCY],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"amount": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_AMOUNT}}}}}},
                "responses": {
                    "201": {"description": "The refund",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refund"}}}},
                    "202": {"description": "Accepted; being settled",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refund"}}}},
                    **_errors(400, 401, 404, 409, 413, 415, 429, 503),
                },
            },
        },
        "/api/v1/refunds/{refund_id}": {
            "get": {
                "operationId": "getRefund",
                "parameters": [_REFUND_ID],
                "responses": {
                    "200": {"description": "The refund",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refund"}}}},
                    **_errors(401, 404, 429, 503),
                },
            }
        },
    },
}


@require_GET
def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(DOCUMENT)
