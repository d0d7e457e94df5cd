"""The payment API against the real localstripe through the sandbox proxy."""

from __future__ import annotations

import pytest

from payments.models import IdempotencyRecord, Payment
from payments.services.idempotency import idempotency_release
from tests.payments.factories import Api, make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(gateway) -> Api:
    _, key = make_client()
    return Api(key)


def test_payment_succeeds_and_is_recorded_here_and_at_the_gateway(api: Api, gateway) -> None:
    response = api.pay(amount=1250, currency="EUR", reference="order-1", metadata={"cart": "7"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["amount"] == 1250 and body["currency"] == "eur" and body["reference"] == "order-1"
    assert body["gateway_id"].startswith("pi_")
    assert body["attempts"] == 1
    payment = Payment.objects.get(pk=body["id"])
    assert payment.attempts.get().outcome == "ok"
    assert (payment.metadata, payment.reference, payment.gateway_id) == ({"cart": "7"}, "order-1", body["gateway_id"])
    # The answer is kept for replays and the key's lease is over, with the payment's own write.
    record = IdempotencyRecord.objects.get(resource_id=body["id"])
    assert (record.response_status, record.response_body, record.locked_until) == (201, body, None)
    intents = gateway.intents_for("payment_id", body["id"])
    assert [i["id"] for i in intents] == [body["gateway_id"]]
    assert api.get(f"/api/v1/payments/{body['id']}").json()["status"] == "succeeded"


def test_decline_ends_failed_with_a_code_not_an_error(api: Api) -> None:
    response = api.pay(payment_method="pm_card_chargeCustomerFail")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "failed"
    # Stripe's decline_code says why the bank declined (the generic code card_declined says only that).
    assert body["failure_code"] == "generic_decline"
    assert Payment.objects.get(pk=body["id"]).attempts.get().outcome == "declined"


def test_same_key_same_body_replays_the_first_answer(api: Api, gateway) -> None:
    first = api.pay(idempotency_key="order-42")
    again = api.pay(idempotency_key="order-42")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(gateway.intents_for("payment_id", first.json()["id"])) == 1
    assert Payment.objects.count() == 1


def test_a_late_lease_end_keeps_the_answer_another_request_kept(api: Api) -> None:
    first = api.pay(idempotency_key="order-44")
    record = IdempotencyRecord.objects.get(key="order-44")
    idempotency_release(record=record)  # a request whose lease had run out, ending without an answer
    record.refresh_from_db()
    assert (record.response_status, record.response_body) == (201, first.json())
    assert api.pay(idempotency_key="order-44").json() == first.json()


def test_same_key_other_body_is_409(api: Api) -> None:
    api.pay(idempotency_key="order-43", amount=1000)
    response = api.pay(idempotency_key="order-43", amount=2000)
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "idempotency_error"


def test_keys_are_scoped_per_client(gateway) -> None:
    _, key_a = make_client()
    _, key_b = make_client()
    a = Api(key_a).pay(idempotency_key="same")
    b = Api(key_b).pay(idempotency_key="same")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert Api(key_b).get(f"/api/v1/payments/{a.json()['id']}").status_code == 404


def test_list_filters_and_paginates(api: Api) -> None:
    ids = [api.pay(reference=f"r{i % 2}").json()["id"] for i in range(5)]
    page = api.get("/api/v1/payments", limit=2).json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = api.get("/api/v1/payments", limit=10, starting_after=page["data"][-1]["id"]).json()
    assert [p["id"] for p in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False
    only = api.get("/api/v1/payments", reference="r1").json()["data"]
    assert {p["id"] for p in only} == {ids[1], ids[3]}
    assert api.get("/api/v1/payments", status="succeeded", limit=100).json()["data"]
    assert api.get("/api/v1/payments", status="nonsense").status_code == 400


def test_refunds_partial_then_full_and_never_above_what_is_left(api: Api) -> None:
    payment = api.pay(amount=1000).json()
    part = api.refund(payment["id"], amount=300)
    assert part.status_code == 201, part.content
    assert part.json()["status"] == "succeeded"
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "partially_refunded"
    too_much = api.refund(payment["id"], amount=800)
    assert too_much.status_code == 400
    assert too_much.json()["error"]["param"] == "amount"
    rest = api.refund(payment["id"])
    assert rest.status_code == 201 and rest.json()["amount"] == 700
    assert api.get(f"/api/v1/payments/{payment['id']}").json()["status"] == "refunded"


def test_refund_of_a_failed_payment_is_refused(api: Api) -> None:
    payment = api.pay(payment_method="pm_card_chargeCustomerFail").json()
    response = api.refund(payment["id"])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payment_not_refundable"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"currency": "usd", "payment_method": "pm_card_visa"}, 400, "amount"),
        ({"amount": -5, "currency": "usd", "payment_method": "pm_card_visa"}, 400, "amount"),
        ({"amount": 10.5, "currency": "usd", "payment_method": "pm_card_visa"}, 400, "amount"),
        ({"amount": "100", "currency": "usd", "payment_method": "pm_card_visa"}, 400, "amount"),
        ({"amount": True, "currency": "usd", "payment_method": "pm_card_visa"}, 400, "amount"),
        ({"amount": 100, "currency": "xyz", "payment_method": "pm_card_visa"}, 400, "currency"),
        ({"amount": 100, "currency": "usd", "payment_method": "4242424242424242"}, 400, None),
        ({"amount": 100, "currency": "usd", "payment_method": "tok_visa"}, 400, "payment_method"),
        ({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "colour": "red"}, 400, "colour"),
        ({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "metadata": {"a": 1}}, 400, "metadata[a]"),
        ({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "cvc": "123"}, 400, "cvc"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_param(api: Api, body: dict, status: int, param: str | None) -> None:
    response = api.http.post("/api/v1/payments", body, content_type="application/json", **api.headers("k"))
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["param"] == param
    assert set(error) == {"type", "code", "message", "param"}
    assert Payment.objects.count() == 0


def test_card_number_anywhere_is_refused_and_not_kept(api: Api) -> None:
    response = api.pay(reference="card 4242 4242 4242 4242")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "card_data_not_allowed"
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b"amount=100", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"a": "' + b"x" * 20000 + b'"}', "application/json", 413, "body_too_large"),
        (b'{"metadata": {"a": {"b": {"c": {"d": {"e": 1}}}}}}', "application/json", 400, "invalid_json"),
    ],
)
def test_malformed_bodies(api: Api, raw: bytes, content_type: str, status: int, code: str) -> None:
    response = api.post_raw("/api/v1/payments", raw, content_type=content_type)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_missing_idempotency_key_and_bad_auth(api: Api) -> None:
    response = api.http.post("/api/v1/payments", {"amount": 1, "currency": "usd", "payment_method": "pm_card_visa"},
                             content_type="application/json", **api.headers(None))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert Api("pok_nope_nope").pay().status_code == 401
    assert api.http.get("/api/v1/payments").status_code == 401
    assert api.http.delete("/api/v1/payments", **api.headers(None)).status_code == 405


def test_revoked_key_is_refused(gateway) -> None:
    from payments.services.api_keys import api_key_revoke

    client, key = make_client()
    assert Api(key).pay().status_code == 201
    api_key_revoke(client=client)
    assert Api(key).pay().status_code == 401


def test_openapi_document_describes_the_contract(client) -> None:
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/payments", "/api/v1/payments/{payment_id}", "/api/v1/payments/{payment_id}/refunds"} <= set(doc["paths"])
    assert set(doc["components"]["schemas"]["Payment"]["properties"]["status"]["enum"]) == {
        "pending", "processing", "requires_action", "succeeded", "failed", "canceled", "unknown", "refunded",
        "partially_refunded"}


def test_rate_limit_per_key_answers_429_with_retry_after(gateway, settings) -> None:
    settings.API_RATE_LIMIT = 1
    settings.API_RATE_BURST = 3
    _, key = make_client()
    _, other = make_client()
    codes = [Api(key).get("/api/v1/payments").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [429, 429]
    limited = Api(key).get("/api/v1/payments")
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited["Retry-After"]) >= 1
    assert Api(other).get("/api/v1/payments").status_code == 200  # per key, not global


def test_ids_with_digit_runs_inside_are_not_mistaken_for_cards(api: Api) -> None:
    # 4242424242424242 passes Luhn; inside a hex id it is not a card number.
    response = api.pay(metadata={"run": "ab4242424242424242cd"}, reference="4242424242424242x")
    assert response.status_code == 201, response.content
    assert api.pay(reference="card: 4242424242424242").status_code == 400
