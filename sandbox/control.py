"""The proxy's control API under /_sandbox/: never forwarded, never faulted.

    GET    /_sandbox/faults            {"faults": [rule, ...], "refusing_for_ms": n}
    POST   /_sandbox/faults            add a rule (see faults.parse_rule) -> the rule
    DELETE /_sandbox/faults            remove every rule -> {"cleared": n}
    GET    /_sandbox/mode              {"fast": bool}
    POST   /_sandbox/mode              {"fast": bool} -> {"fast": bool}
    GET    /_sandbox/stats             counters (see state.Stats)
    POST   /_sandbox/reset             {"upstream": bool} -> zero stats, drop rules,
                                       idempotency keys and fast-mode intents; with
                                       upstream=true also empty localstripe
    GET    /_sandbox/intents?metadata_key=K&value=V
                                       payment intents (localstripe's and fast mode's)
                                       whose metadata[K] == V -> {"data": [...]}
    GET    /_sandbox/health            {"ok": true, "upstream": url}
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sandbox.errors import json_response, stripe_error
from sandbox.faults import FaultError, parse_rule
from sandbox.http11 import Request, Response
from sandbox.state import ProxyState
from sandbox.upstream import UpstreamUnavailable

LIST_PAGE = 100


def _body(req: Request) -> Any:
    if not req.body.strip():
        return {}
    return json.loads(req.body)


def _bad(message: str, status: int = 400) -> Response:
    return stripe_error(status, "invalid_request_error", f"sandbox control: {message}")


async def handle_control(state: ProxyState, req: Request) -> Response:
    try:
        return await _route(state, req)
    except Exception as exc:  # answer, don't drop the connection: a drop looks like a fault
        return _bad(f"internal error: {type(exc).__name__}: {exc}", 500)


async def _route(state: ProxyState, req: Request) -> Response:
    route = (req.method, req.path.rstrip("/"))
    try:
        payload = _body(req) if req.method in ("POST", "PUT") else {}
    except ValueError:
        return _bad("body must be JSON")

    if route == ("GET", "/_sandbox/health"):
        return json_response(200, {"ok": True, "upstream": state.upstream.base_url})
    if route == ("GET", "/_sandbox/stats"):
        return json_response(200, state.stats_dict())
    if route == ("GET", "/_sandbox/faults"):
        rules = [rule.to_dict() for rule in state.faults.rules]
        return json_response(200, {"faults": rules, "refusing_for_ms": state.refusing_for_ms})
    if route == ("POST", "/_sandbox/faults"):
        try:
            rule = await state.add_fault(parse_rule(payload))
        except FaultError as exc:
            return _bad(str(exc))
        return json_response(200, rule.to_dict())
    if route == ("DELETE", "/_sandbox/faults"):
        return json_response(200, {"cleared": state.faults.clear()})
    if route == ("GET", "/_sandbox/mode"):
        return json_response(200, {"fast": state.fast_mode})
    if route == ("POST", "/_sandbox/mode"):
        fast = payload.get("fast") if isinstance(payload, dict) else None
        if not isinstance(fast, bool):
            return _bad('expected {"fast": true|false}')
        state.fast_mode = fast
        return json_response(200, {"fast": fast})
    if route == ("POST", "/_sandbox/reset"):
        upstream = bool(payload.get("upstream")) if isinstance(payload, dict) else False
        try:
            await state.reset(upstream=upstream)
        except UpstreamUnavailable as exc:
            return _bad(f"local state reset, but emptying the gateway failed: {exc}", 502)
        return json_response(200, {"reset": True, "upstream": upstream})
    if route == ("GET", "/_sandbox/intents"):
        return await _intents(state, dict(parse_qsl(req.query)))
    return _bad(f"no control endpoint {req.method} {req.path}", 404)


async def _intents(state: ProxyState, query: dict[str, str]) -> Response:
    """Payment intents whose metadata matches, from fast mode and from localstripe.

    localstripe's GET /v1/payment_intents lists every intent (oldest first, `limit` and
    `starting_after` work) but rejects any filter ("Unexpected metadata", 400), and it has
    no search API; so we page through all of it and filter here. Fine for tests (a few
    hundred intents); it is O(n) per call.
    """
    key, value = query.get("metadata_key"), query.get("value")
    if not key or value is None:
        return _bad("expected ?metadata_key=K&value=V")
    found = [pi for pi in state.fast.intents() if (pi.get("metadata") or {}).get(key) == value]
    after: str | None = None
    try:
        while True:
            params = {"limit": str(LIST_PAGE)}
            if after:
                params["starting_after"] = after
            page = await state.upstream.get_json("/v1/payment_intents?" + urlencode(params))
            data = page.get("data") or []
            found.extend(pi for pi in data if (pi.get("metadata") or {}).get(key) == value)
            if not page.get("has_more") or not data:
                break
            after = data[-1]["id"]
    except UpstreamUnavailable as exc:
        if not state.fast_mode:
            return _bad(f"could not list the gateway's intents: {exc}", 502)
        # fast mode runs fine without a gateway; what it made is the whole answer then
    return json_response(200, {"data": found})
