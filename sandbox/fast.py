"""Fast mode: canned gateway answers made by the proxy, for throughput benchmarks.

localstripe is a single-threaded Python app that rebuilds every object's JSON on each
answer; it would be the bottleneck of any benchmark of our own code. In fast mode the
proxy answers the payment hot path itself, cheaply, in localstripe's own shapes (so the
client under test cannot tell), and forwards everything else to the gateway.

Answered locally:
  POST /v1/payment_intents        create (confirm=true + payment_method -> succeeded)
  GET  /v1/payment_intents/{id}   what fast mode created (404 otherwise)
  GET  /v1/payment_intents        list of what fast mode created (limit, starting_after)
  GET  /v1/balance                canned balance
Declines mirror localstripe: payment_method `pm_card_chargeCustomerFail` answers 402.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl

from sandbox.errors import stripe_error
from sandbox.http11 import Request, Response

MAX_INTENTS = 100_000  # oldest are forgotten beyond this: a benchmark can run for hours
DECLINING_PAYMENT_METHODS = frozenset({"pm_card_chargeCustomerFail"})
_ALPHABET = string.ascii_letters + string.digits
_PI_PREFIX = "/v1/payment_intents/"

_BALANCE = json.dumps(
    {
        # localstripe's shape: objects, where real Stripe has lists of objects
        "available": {"amount": 2000, "currency": "eur", "source_types": {"card": 2000}},
        "livemode": False,
        "object": "balance",
        "pending": {"amount": 0, "currency": "eur", "source_types": {"card": 0}},
    }
).encode()


def _random_id(prefix: str, n: int = 14) -> str:
    return prefix + "".join(random.choices(_ALPHABET, k=n))


def _authorized(req: Request) -> bool:
    # localstripe accepts any `sk_...` key, as Bearer or as Basic user; mirror the check
    # cheaply so a client that forgets its key fails in fast mode too.
    auth = req.header("authorization") or ""
    if auth.startswith("Bearer "):
        return auth[7:].startswith("sk_") and len(auth) > 12
    if auth.startswith("Basic "):
        try:
            user = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            return False
        return user.startswith("sk_") and len(user) > 5
    return False


def parse_params(req: Request) -> dict[str, Any]:
    """Form or JSON body into a dict; `metadata[k]=v` becomes {"metadata": {"k": "v"}}."""
    if not req.body:
        return {}
    if (req.header("content-type") or "").startswith("application/json"):
        try:
            data = json.loads(req.body)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    params: dict[str, Any] = {}
    for key, value in parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True):
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            nested = params.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner] = value
        else:
            params[key] = value
    return params


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class FastGateway:
    def __init__(self, max_intents: int = MAX_INTENTS) -> None:
        self._max = max_intents
        # id -> serialized JSON: serializing once at create keeps GETs and memory cheap
        self._intents: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._intents)

    def clear(self) -> None:
        self._intents.clear()

    def handles(self, method: str, path: str) -> bool:
        if path == "/v1/payment_intents":
            return method in ("POST", "GET")
        if path.startswith(_PI_PREFIX):
            return method == "GET" and "/" not in path[len(_PI_PREFIX):]
        return method == "GET" and path == "/v1/balance"

    def answer(self, req: Request) -> Response:
        if not _authorized(req):
            return stripe_error(401, "invalid_request_error", "Unauthorized")
        path = req.path
        if path == "/v1/balance":
            return Response(200, _BALANCE)
        if path == "/v1/payment_intents":
            return self._create(req) if req.method == "POST" else self._list(req)
        body = self._intents.get(path[len(_PI_PREFIX):])
        if body is None:
            return stripe_error(404, "invalid_request_error", "Not Found")
        return Response(200, body)

    def intents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self._intents.values()]

    def _create(self, req: Request) -> Response:
        params = parse_params(req)
        try:
            amount = int(params.get("amount"))  # type: ignore[arg-type]  # None is caught below as a TypeError
        except (TypeError, ValueError):
            amount = 0
        currency = params.get("currency")
        metadata = params.get("metadata") or {}
        payment_method = params.get("payment_method") or None
        capture_method = params.get("capture_method") or "automatic_async"
        if amount <= 0 or not isinstance(currency, str) or not currency or not isinstance(metadata, dict):
            return stripe_error(400, "invalid_request_error", "Bad request")

        pi_id = _random_id("pi_")
        while pi_id in self._intents:
            pi_id = _random_id("pi_")
        now = int(time.time())
        charge = None
        declined = False
        if _truthy(params.get("confirm")) and payment_method:
            declined = payment_method in DECLINING_PAYMENT_METHODS
            captured = capture_method != "manual"
            charge_id = _random_id("ch_")
            charge = {
                "amount": amount,
                "amount_refunded": 0,
                "balance_transaction": None if declined or not captured else _random_id("txn_"),
                "captured": captured,
                "created": now,
                "currency": currency,
                "customer": params.get("customer"),
                "description": None,
                "failure_code": "card_declined" if declined else None,
                "failure_message": "Your card was declined." if declined else None,
                "id": charge_id,
                "invoice": None,
                "livemode": False,
                "metadata": {},
                "object": "charge",
                "paid": not declined,
                "payment_intent": pi_id,
                "payment_method": _random_id("pm_"),
                "receipt_email": None,
                "receipt_number": None,
                "refunded": False,
                "refunds": {"data": [], "has_more": False, "object": "list", "total_count": 0, "url": f"/v1/charges/{charge_id}/refunds"},
                "statement_descriptor": None,
                "status": "failed" if declined else "succeeded",
            }
        if charge is None:
            status = "requires_confirmation" if payment_method else "requires_payment_method"
        elif declined:
            status = "requires_payment_method"
        else:
            status = "succeeded" if charge["captured"] else "requires_capture"

        intent = {
            "amount": amount,
            "capture_method": capture_method,
            "charges": {
                "data": [charge] if charge else [],
                "has_more": False,
                "object": "list",
                "total_count": 1 if charge else 0,
                "url": f"/v1/charges?payment_intent={pi_id}",
            },
            "client_secret": f"{pi_id}_secret_{_random_id('', 16)}",
            "created": now,
            "currency": currency,
            "customer": params.get("customer"),
            "id": pi_id,
            "invoice": None,
            "last_payment_error": (
                {"charge": charge["id"], "code": "card_declined", "message": "Your card was declined."}
                if declined and charge
                else None
            ),
            "latest_charge": charge,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "object": "payment_intent",
            "payment_method": payment_method,
            "status": status,
        }
        body = json.dumps(intent).encode()
        self._intents[pi_id] = body
        if len(self._intents) > self._max:
            self._intents.popitem(last=False)
        if declined and charge:
            # localstripe keeps the intent but answers the create with the charge's error
            return stripe_error(402, "invalid_request_error", "Your card was declined.", code="card_declined", charge=charge["id"])
        return Response(200, body)

    def _list(self, req: Request) -> Response:
        query = dict(parse_qsl(req.query))
        try:
            limit = int(query.get("limit", 10))
        except ValueError:
            limit = 0
        if limit <= 0:
            return stripe_error(400, "invalid_request_error", "Bad request")
        ids = list(self._intents)
        start = 0
        after = query.get("starting_after")
        if after is not None and after in self._intents:
            start = ids.index(after) + 1
        page = ids[start : start + limit]
        body = b"".join(
            [
                b'{"data": [',
                b", ".join(self._intents[i] for i in page),
                b'], "has_more": ',
                b"true" if len(ids) > start + limit else b"false",
                b', "object": "list", "total_count": %d, "url": "/v1/payment_intents"}' % len(ids),
            ]
        )
        return Response(200, body)
