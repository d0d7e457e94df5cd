"""In-process checks of the pieces the proxy is built from (no sockets, no subprocesses)."""

from __future__ import annotations

import asyncio
import json

import pytest

from sandbox.fast import FastGateway, parse_params
from sandbox.faults import FaultBook, FaultError, canned_answer, parse_rule
from sandbox.http11 import BadRequest, Request, Response, read_request, render
from sandbox.idempotency import IdempotencyStore, Outcome, fingerprint_of, scope_of


def request(method: str = "POST", target: str = "/v1/payment_intents", body: bytes = b"", **headers: str) -> Request:
    return Request(method, target, "HTTP/1.1", [(k.replace("_", "-"), v) for k, v in headers.items()], body)


# ---- http11 --------------------------------------------------------------------------


class _NullWriter:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


def parse(raw: bytes) -> tuple[Request | None, bytes]:
    async def go() -> tuple[Request | None, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        writer = _NullWriter()
        return await read_request(reader, writer), writer.written  # type: ignore[arg-type]

    return asyncio.run(go())


def test_parses_content_length_chunked_and_expect() -> None:
    req, _ = parse(b"POST /v1/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    assert req is not None and (req.method, req.path, req.query, req.body) == ("POST", "/v1/x", "a=1", b"abc")
    assert req.keep_alive

    req, _ = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
    assert req is not None and req.body == b"abcde"

    req, written = parse(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
    assert written.startswith(b"HTTP/1.1 100 Continue") and req is not None and not req.keep_alive

    req, _ = parse(b"GET http://127.0.0.1:1/v1/balance HTTP/1.0\r\n\r\n")
    assert req is not None and req.target == "/v1/balance" and not req.keep_alive

    assert parse(b"")[0] is None  # client closed between requests


@pytest.mark.parametrize(
    "raw",
    [b"NONSENSE\r\n\r\n", b"GET / HTTP/2\r\n\r\n", b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", b"GET / HTTP/1.1\r\n"],
)
def test_rejects_what_it_cannot_frame(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(raw)


def test_render_sets_framing() -> None:
    wire = render(Response(201, b"{}", [("Request-Id", "req_1")]), keep_alive=False)
    head, body = wire.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Created") and b"Content-Length: 2" in head
    assert b"Connection: close" in head and b"Request-Id: req_1" in head and body == b"{}"


# ---- faults --------------------------------------------------------------------------


def test_parse_rule_defaults_and_validation() -> None:
    rule = parse_rule({"kind": "latency", "method": "post"})
    assert (rule.count, rule.probability, rule.method, rule.delay_ms) == (None, 1.0, "POST", 2000)
    assert parse_rule({"kind": "refuse", "delay_ms": 300}).duration_ms == 300
    for bad in (
        {"kind": "nope"},
        {"kind": "http_500", "count": -1},
        {"kind": "http_500", "count": True},
        {"kind": "http_500", "probability": 2},
        {"kind": "http_500", "path_prefix": "v1"},
        {"kind": "http_500", "colour": "red"},
        {"kind": "refuse", "count": 2},
        {"kind": "refuse", "path_prefix": "/v1"},
    ):
        with pytest.raises(FaultError):
            parse_rule(bad)


def test_fault_book_first_match_count_and_probability() -> None:
    book = FaultBook()
    book.add(parse_rule({"kind": "http_500", "probability": 0.0}))
    book.add(parse_rule({"kind": "http_502", "method": "GET"}))
    book.add(parse_rule({"kind": "http_503", "count": 2, "path_prefix": "/v1/payment_intents"}))
    assert book.take("POST", "/v1/refunds") is None
    assert [book.take("POST", "/v1/payment_intents/x").kind for _ in range(2)] == ["http_503"] * 2  # type: ignore[union-attr]
    assert book.take("POST", "/v1/payment_intents") is None  # count used up, rule removed
    assert book.take("GET", "/v1/balance").kind == "http_502"  # type: ignore[union-attr]
    assert book.applied == {"http_503": 2, "http_502": 1}
    assert [rule.kind for rule in book.rules] == ["http_500", "http_502"]


def test_canned_answers_are_stripe_shaped() -> None:
    limited = canned_answer(parse_rule({"kind": "rate_limit", "retry_after": 4}))
    assert limited.status == 429 and limited.header("Retry-After") == "4"
    assert json.loads(limited.body)["error"]["type"] == "rate_limit_error"
    for kind, status in (("http_500", 500), ("http_502", 502), ("http_503", 503)):
        answer = canned_answer(parse_rule({"kind": kind}))
        assert answer.status == status and json.loads(answer.body)["error"]["type"] == "api_error"


# ---- idempotency ---------------------------------------------------------------------


def test_idempotency_store_life_cycle() -> None:
    store = IdempotencyStore()
    req = request(body=b"amount=1", Authorization="Bearer sk_a", Idempotency_Key="k")
    scope, fp = scope_of(req), fingerprint_of(req)
    assert "sk_a" not in scope  # the credential is hashed
    assert store.begin(scope, "k", fp)[0] is Outcome.NEW
    assert store.begin(scope, "k", fp)[0] is Outcome.IN_USE
    assert store.begin(scope, "k", b"other")[0] is Outcome.MISMATCH
    store.complete(scope, "k", Response(402, b"declined"))
    outcome, saved = store.begin(scope, "k", fp)
    assert outcome is Outcome.REPLAY and saved is not None and saved.body == b"declined"


@pytest.mark.parametrize("status", [500, 502, 503, 401, 429])
def test_idempotency_does_not_save_retryable_answers(status: int) -> None:
    store = IdempotencyStore()
    assert store.begin("s", "k", b"f")[0] is Outcome.NEW
    store.complete("s", "k", Response(status))
    assert store.begin("s", "k", b"f")[0] is Outcome.NEW


def test_idempotency_abandon_and_bounds() -> None:
    store = IdempotencyStore(max_keys=2)
    store.begin("s", "k0", b"f")
    store.abandon("s", "k0")
    assert store.begin("s", "k0", b"f")[0] is Outcome.NEW  # freed, claimable again
    store.complete("s", "k0", Response(200))
    for i in (1, 2):
        store.begin("s", f"k{i}", b"f")
        store.complete("s", f"k{i}", Response(200))
    assert len(store) == 2 and store.begin("s", "k0", b"f")[0] is Outcome.NEW  # oldest evicted


# ---- fast mode -----------------------------------------------------------------------


def test_parse_params_form_and_json() -> None:
    form = request(body=b"amount=5&currency=eur&metadata[order]=o%201&metadata[x]=")
    assert parse_params(form) == {"amount": "5", "currency": "eur", "metadata": {"order": "o 1", "x": ""}}
    as_json = request(body=b'{"amount": 5, "metadata": {"a": "b"}}', Content_Type="application/json")
    assert parse_params(as_json) == {"amount": 5, "metadata": {"a": "b"}}


def test_fast_gateway_states_like_localstripe() -> None:
    fast = FastGateway()
    auth = {"Authorization": "Bearer sk_test_fast"}

    def create(body: bytes) -> Response:
        return fast.answer(request(body=body, **auth))

    assert json.loads(create(b"amount=5&currency=eur").body)["status"] == "requires_payment_method"
    assert json.loads(create(b"amount=5&currency=eur&payment_method=pm_card_visa").body)["status"] == (
        "requires_confirmation"
    )
    manual = create(b"amount=5&currency=eur&payment_method=pm_card_visa&confirm=true&capture_method=manual")
    assert json.loads(manual.body)["status"] == "requires_capture"
    assert create(b"amount=0&currency=eur").status == 400
    assert create(b"amount=5&currency=eur&payment_method=pm_card_chargeCustomerFail&confirm=true").status == 402
    assert fast.answer(request(body=b"amount=5&currency=eur")).status == 401
    listed = json.loads(fast.answer(request("GET", "/v1/payment_intents?limit=2", **auth)).body)
    assert (len(listed["data"]), listed["has_more"], listed["total_count"]) == (2, True, 4)
    assert fast.handles("GET", "/v1/payment_intents/pi_1") and not fast.handles("POST", "/v1/payment_intents/pi_1")
