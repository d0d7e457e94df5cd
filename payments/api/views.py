"""The payment API (/api/v1/): parse, call one service or selector, answer in JSON."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from config import queueing
from config.errors import error_response
from config.postgres.failures import classify_db_error
from payments import selectors
from payments.api import keycache
from payments.api.answers import payment_answer, payment_answer_fresh, refund_answer
from payments.api.ratelimit import rate_limit_check
from payments.api.serializers import payment_to_dict, refund_to_dict
from payments.api.validation import (
    ApiError,
    clean_query_value,
    is_resource_id,
    parse_idempotency_key,
    parse_json_body,
    parse_payment,
    parse_refund,
    request_hash,
)
from payments.models import ApiClient, IdempotencyRecord, Payment, PaymentStatus
from payments.services import refunds
from payments.services.idempotency import ApiAnswer, idempotency_claim, idempotency_release
from payments.services.submit import payment_create, payment_open, payment_submit

logger = logging.getLogger(__name__)

View = Callable[..., JsonResponse]


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> JsonResponse:
    return error_response(exc.status, type=exc.type, code=exc.code, message=exc.message, param=exc.param,
                          headers=headers)


def api_view(methods: set[str]) -> Callable[[View], View]:
    """Bearer authentication, method check and the error shape for every API view."""

    def decorator(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method == "POST" and queueing.queued_for() > settings.PAYMENT_QUEUE_TIMEOUT:
                # Answered without starting: a write that queued this long for a thread would
                # answer past its client's deadline, and the client may already have given up.
                queueing.shed()
                return error_response(503, type="api_error", code="queue_timeout",
                                      message="The server is busy; nothing was done. Retry with the same "
                                              "Idempotency-Key.",
                                      headers={"Retry-After": "1"})
            if request.method not in methods:
                return error_response(405, type="invalid_request_error", code="method_not_allowed",
                                      message=f"{request.method} is not allowed here.",
                                      headers={"Allow": ", ".join(sorted(methods))})
            auth = request.headers.get("Authorization", "")
            scheme, _, raw_key = auth.partition(" ")
            verified = keycache.authenticate(raw_key.strip()) if scheme.lower() == "bearer" else None
            client = None
            if verified is not None:
                # The rate limit's answer also says whether a key the cache vouched for changed.
                allowed, retry_after, generation = rate_limit_check(key_id=verified.prefix)
                client = keycache.confirm(verified, generation)
            if client is None:
                return error_response(401, type="authentication_error", code="invalid_api_key",
                                      message="Send a valid API key as 'Authorization: Bearer <key>'.",
                                      headers={"WWW-Authenticate": 'Bearer realm="payments"'})
            if not allowed:
                return error_response(429, type="rate_limit_error", code="rate_limited",
                                      message="Too many requests for this API key; slow down.",
                                      headers={"Retry-After": str(max(1, math.ceil(retry_after)))})
            try:
                return view(request, client, *args, **kwargs)
            except ApiError as exc:
                return _error(exc)

        return wrapper

    return decorator


def _unavailable(code: str, message: str, retry_after: float | None) -> JsonResponse:
    return error_response(503, type="api_error", code=code, message=message,
                          headers={"Retry-After": str(max(1, int(retry_after or 1)))})


def _idempotent(request: HttpRequest, client: ApiClient, endpoint: str, data: dict[str, Any],
                run: Callable[[IdempotencyRecord], ApiAnswer],
                open_first: Callable[[str, str, str, datetime], IdempotencyRecord] | None = None) -> JsonResponse:
    """Stripe's contract: a repeat replays the first final answer; another body is a 409.
    `open_first(key, request_hash, endpoint, lease)` writes the resource with a first claim."""
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    digest = request_hash(data)
    try:
        claim = idempotency_claim(
            client=client, key=key, endpoint=endpoint, request_hash=digest,
            open_first=(lambda lease: open_first(key, digest, endpoint, lease)) if open_first is not None else None)
    except IntegrityError as exc:
        _refuse_an_expired_key(exc)
        raise
    if claim.kind == "mismatch":
        raise ApiError(409, "idempotency_key_reused",
                       "This Idempotency-Key was used with different parameters.", "Idempotency-Key",
                       type="idempotency_error")
    if claim.kind == "in_use":
        raise ApiError(409, "idempotency_key_in_use",
                       "A request with this Idempotency-Key is still in progress; retry shortly.",
                       "Idempotency-Key", type="idempotency_error")
    if claim.kind == "replay":
        response = JsonResponse(claim.record.response_body, status=claim.record.response_status)
        response["Idempotent-Replayed"] = "true"
        return response
    try:
        answer = run(claim.record)
    except Exception as exc:
        # With the database exhausted or away, releasing would wait for the pool once more
        # and only delay the 503; the lease runs out by itself.
        if classify_db_error(exc) is None:
            idempotency_release(record=claim.record)
        if isinstance(exc, IntegrityError):
            _refuse_an_expired_key(exc)
        raise
    if claim.record.locked_until is not None:  # not already released with the payment's first answer
        idempotency_release(record=claim.record, status=answer.status if answer.final else None,
                            body=answer.body if answer.final else None)
    if answer.status == 503:
        error = answer.body["error"]
        return _unavailable(error["code"], error["message"], answer.retry_after)
    return JsonResponse(answer.body, status=answer.status)


# A payment or refund keeps its key for good, while the key's record (the answer to replay) is
# pruned after the replay window (payments/retention.py).
_KEY_OF_A_RESOURCE = frozenset({"payment_unique_idempotency_key", "refund_unique_idempotency_key"})


def _refuse_an_expired_key(exc: IntegrityError) -> None:
    """A key reused after its replay window is a 409 that says so (Stripe would charge anew; the
    resource that holds the key forbids a second one); any other conflict is left to the caller."""
    if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) in _KEY_OF_A_RESOURCE:
        raise ApiError(409, "idempotency_key_expired",
                       "This Idempotency-Key was used more than 24 hours ago and its answer is no longer kept; "
                       "send the request with a new key.", "Idempotency-Key", type="idempotency_error") from exc


@api_view({"GET", "POST"})
def payments_collection(request: HttpRequest, client: ApiClient) -> JsonResponse:
    if request.method == "GET":
        return _payment_list(request, client)
    data = parse_json_body(content_type=request.content_type or "", body=request.body)
    payment_request = parse_payment(data)

    opened: Payment | None = None

    def open_first(key: str, digest: str, endpoint: str, lease: datetime) -> IdempotencyRecord:
        nonlocal opened
        opened, record = payment_open(client=client, idempotency_key=key, request_hash=digest,
                                      endpoint=endpoint, lease=lease, **payment_request.__dict__)
        return record

    def run(record: IdempotencyRecord) -> ApiAnswer:
        # A first request opened its payment with the claim. A repeat whose claim was rolled
        # back (the key existed) takes the record's payment after an expired lease instead.
        fresh = opened if opened is not None and opened.id == record.resource_id else None
        payment = fresh or payment_create(client=client, record=record, **payment_request.__dict__)
        payment = payment_submit(payment_id=payment.id, opened=fresh,
                                 release=(record, payment_answer_fresh) if fresh else None)
        if record.locked_until is None and record.response_status is not None:
            # Kept with the payment's write.
            return ApiAnswer(record.response_status, record.response_body or {}, final=True)
        return payment_answer_fresh(payment) if fresh else payment_answer(payment)

    return _idempotent(request, client, "payments.create", data, run, open_first=open_first)


LIST_PARAMS = frozenset({"status", "reference", "limit", "starting_after"})


def _payment_list(request: HttpRequest, client: ApiClient) -> JsonResponse:
    for name in request.GET:
        if name not in LIST_PARAMS:
            raise ApiError(400, "parameter_unknown", f"Received unknown parameter: {name}", name)
    status = request.GET.get("status")
    if status is not None and status not in PaymentStatus.values:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(PaymentStatus.values)}.", "status")
    limit_raw = request.GET.get("limit", "20")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
        raise ApiError(400, "invalid_limit", "limit must be an integer from 1 to 100.", "limit")
    reference = clean_query_value("reference", request.GET.get("reference", ""))
    starting_after = request.GET.get("starting_after")
    if starting_after is not None and not is_resource_id(starting_after):
        raise ApiError(400, "invalid_parameter", "starting_after must be a payment id.", "starting_after")
    payments, has_more = selectors.payment_list(
        client=client, status=status, reference=reference or None, starting_after=starting_after or None,
        limit=int(limit_raw),
    )
    return JsonResponse({"object": "list", "data": [payment_to_dict(p) for p in payments], "has_more": has_more,
                         "url": "/api/v1/payments"})


@api_view({"GET"})
def payment_detail(request: HttpRequest, client: ApiClient, payment_id: str) -> JsonResponse:
    payment = selectors.payment_get(client=client, payment_id=payment_id) if is_resource_id(payment_id) else None
    if payment is None:
        raise ApiError(404, "resource_missing", f"No such payment: {payment_id}", "id")
    return JsonResponse(payment_to_dict(payment))


@api_view({"GET", "POST"})
def payment_refunds(request: HttpRequest, client: ApiClient, payment_id: str) -> JsonResponse:
    if request.method == "POST":
        # The body is judged first: a bad request is a 400 whichever payment it names.
        data = parse_json_body(content_type=request.content_type or "", body=request.body)
        amount = parse_refund(data)
    payment = selectors.payment_get(client=client, payment_id=payment_id) if is_resource_id(payment_id) else None
    if payment is None:
        raise ApiError(404, "resource_missing", f"No such payment: {payment_id}", "id")
    if request.method == "GET":
        return JsonResponse({"object": "list", "data": [refund_to_dict(r) for r in payment.refunds.all()],
                             "has_more": False, "url": f"/api/v1/payments/{payment.id}/refunds"})

    def run(record: IdempotencyRecord) -> ApiAnswer:
        try:
            refund = refunds.refund_create(client=client, record=record, payment_id=payment_id, amount=amount)
        except refunds.RefundRefused as exc:
            return ApiAnswer(400, {"error": {"type": "invalid_request_error", "code": exc.code,
                                             "message": exc.message, "param": exc.param}}, final=True)
        return refund_answer(refunds.refund_submit(refund_id=refund.id))

    return _idempotent(request, client, f"refunds.create:{payment_id}", data, run)


@api_view({"GET"})
def refund_detail(request: HttpRequest, client: ApiClient, refund_id: str) -> JsonResponse:
    refund = selectors.refund_get(client=client, refund_id=refund_id) if is_resource_id(refund_id) else None
    if refund is None:
        raise ApiError(404, "resource_missing", f"No such refund: {refund_id}", "id")
    return JsonResponse(refund_to_dict(refund))
