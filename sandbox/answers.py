"""The gateway's answer to one request, under Stripe's idempotency contract.

A keyed POST claims its key, is answered by fast mode or forwarded to the gateway, and its
answer is saved before any fault can lose it; the same key again gets the saved answer
(replayed), a different body 400, a request still in flight 409. Declines are reshaped as
Stripe sends them.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from urllib.parse import parse_qs

from sandbox.errors import stripe_error
from sandbox.http11 import Request, Response
from sandbox.idempotency import MAX_KEY_LENGTH, Outcome, fingerprint_of, scope_of
from sandbox.state import ProxyState
from sandbox.upstream import UpstreamUnavailable

_ALPHABET = string.ascii_letters + string.digits


def _request_id() -> str:
    return "req_" + "".join(random.choices(_ALPHABET, k=14))


async def gateway_answer(*, state: ProxyState, req: Request, hold: float = 0.0) -> Response:
    """The gateway's answer to `req`; `hold` s is the time the gateway "spends" with the key claimed."""
    key = req.header("idempotency-key") if req.method == "POST" else None
    if not key:
        if hold:
            await asyncio.sleep(hold)
        return await _dispatch(state, req)
    if len(key) > MAX_KEY_LENGTH:
        return stripe_error(
            400, "invalid_request_error", f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters."
        )

    scope, fingerprint = scope_of(req), fingerprint_of(req)
    outcome, saved = state.idempotency.begin(scope, key, fingerprint)
    if outcome is Outcome.REPLAY:
        assert saved is not None
        state.stats.replayed += 1
        return saved.with_headers(
            ("Idempotent-Replayed", "true"),
            ("Original-Request", saved.header("Request-Id") or ""),
            ("Request-Id", _request_id()),
        )
    if outcome is Outcome.MISMATCH:
        return stripe_error(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used with the same parameters they were first "
            f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
        )
    if outcome is Outcome.IN_USE:
        return stripe_error(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this idempotency key (that probably "
            "means you submitted twice, and the other request is still going through). Please try again later.",
            code="idempotency_key_in_use",
        )

    done = False
    try:
        if hold:
            await asyncio.sleep(hold)
        resp = (await _dispatch(state, req)).with_headers(("Idempotency-Key", key))
        # Saved now, before any fault drops it on the way back: Stripe's behaviour.
        state.idempotency.complete(scope, key, resp)
        done = True
        return resp
    finally:
        if not done:  # cancelled mid-flight: free the key
            state.idempotency.abandon(scope, key)


async def _dispatch(state: ProxyState, req: Request) -> Response:
    if state.fast_mode and state.fast.handles(req.method, req.path):
        state.stats.answered_locally += 1
        resp = state.fast.answer(req)
    else:
        try:
            resp = await state.upstream.forward(req)
        except UpstreamUnavailable as exc:
            state.stats.upstream_errors += 1
            return stripe_error(502, "api_error", f"sandbox proxy: the gateway did not answer ({exc})")
        state.stats.forwarded += 1
    if resp.status == 402:
        resp = await _card_error(state, resp)
    elif resp.status == 404 and req.method == "POST" and req.path == "/v1/payment_intents":
        resp = _missing_payment_method(req, resp)
    return resp.with_headers(("Request-Id", _request_id()))


async def _card_error(state: ProxyState, resp: Response) -> Response:
    """localstripe's decline (402, `invalid_request_error`) in Stripe's shape: a `card_error`
    with a `decline_code`, the PaymentIntent it left behind, and `Stripe-Should-Retry: false`."""
    try:
        error = json.loads(resp.body)["error"]
    except (ValueError, KeyError, TypeError):
        return resp
    error["type"] = "card_error"
    error.setdefault("code", "card_declined")
    error.setdefault("decline_code", "generic_decline")
    charge = error.get("charge")
    if isinstance(charge, str) and not state.fast_mode:
        try:
            intent_id = (await state.upstream.get_json(f"/v1/charges/{charge}")).get("payment_intent")
            if isinstance(intent_id, str):
                error["payment_intent"] = await state.upstream.get_json(f"/v1/payment_intents/{intent_id}")
        except (UpstreamUnavailable, ValueError):
            pass  # the intent only adds detail: the decline stands without it
    body = json.dumps({"error": error}).encode()
    return Response(402, body, [*resp.headers, ("Stripe-Should-Retry", "false")], resp.content_type)


def _missing_payment_method(req: Request, resp: Response) -> Response:
    """localstripe's bare 404 for an intent whose payment method it does not hold, in Stripe's
    shape: 400 `invalid_request_error`, `resource_missing`, naming the parameter. Nothing was
    created, so `Stripe-Should-Retry: false`."""
    method = (parse_qs(req.body.decode(errors="replace")).get("payment_method") or [""])[0]
    if not method:
        return resp
    return stripe_error(400, "invalid_request_error", f"No such PaymentMethod: '{method}'", code="resource_missing",
                        param="payment_method", headers=[("Stripe-Should-Retry", "false")])
