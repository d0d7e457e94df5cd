"""The payment gateway client: Stripe's PaymentIntents API over one pooled Session per process.

Every call runs inside an overall deadline, behind the shared circuit breaker, and comes back
as a GatewayResult that says what happened on each try and whether the gateway may have
acted on a request we got no usable answer to (then the outcome is unknown, not failed).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import EmptyPoolError
from urllib3.util import Timeout

from config import queueing
from config.http.pools import AttemptRecord, InstrumentedAdapter, start_attempt_log, stop_attempt_log
from payments.figures import record_gateway_call
from payments.gateway import answers
from payments.gateway.breaker.policy import CircuitOpenError
from payments.gateway.breaker.shared import CircuitBreaker
from payments.gateway.errors import GatewayCredentialsRefused, GatewayError, GatewayTimeout, GatewayUnavailable
from payments.gateway.limiter import ConcurrencyLimiter, signal_for
from payments.gateway.results import GatewayResult, attempt_of, error_outcome, is_body_error
from payments.gateway.retry import RETRY_STATUSES, GatewayRetry, clear_deadline, set_deadline
from payments.gateway.wire import basic_auth, canonical_metadata, path_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayConfig:
    base_url: str
    api_key: str
    connect_timeout: float = 3.0  # s
    read_timeout: float = 10.0  # s
    retry_attempts: int = 3  # tries in all
    retry_delay: float = 1.0  # s, first backoff
    backoff_max: float = 8.0  # s
    pool_maxsize: int = 10
    pool_wait: float = 5.0  # s, wait for a free pooled connection
    deadline: float = 25.0  # s, one logical call with all its tries


class GatewayClient:
    def __init__(self, config: GatewayConfig, *, breaker: CircuitBreaker | None = None,
                 limiter: ConcurrencyLimiter | None = None) -> None:
        self.config = config
        self.breaker = breaker
        self.limiter = limiter
        self.session = requests.Session()
        # No proxies or .netrc from the environment, and no per-request lookups of them.
        self.session.trust_env = False
        self.session.headers.update({"Stripe-Version": "2024-06-20", "User-Agent": "payment-ops/1",
                                     "Authorization": basic_auth(config.api_key)})
        self.base_url = config.base_url.rstrip("/")
        retry = GatewayRetry(
            total=config.retry_attempts - 1,
            connect=config.retry_attempts - 1,
            read=config.retry_attempts - 1,
            status=config.retry_attempts - 1,
            other=0,
            allowed_methods=frozenset({"GET", "POST", "DELETE"}),
            status_forcelist=RETRY_STATUSES,
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            backoff_jitter=config.retry_delay / 2,
            backoff_max=config.backoff_max,
            first_delay=config.retry_delay,
        )
        self.adapter = InstrumentedAdapter(
            "payment",
            pool_connections=4,
            pool_maxsize=config.pool_maxsize,
            pool_block=True,
            pool_wait=config.pool_wait,
            max_retries=retry,
        )
        self.session.mount(config.base_url.rstrip("/") + "/", self.adapter)
        self.timeout = Timeout(connect=config.connect_timeout, read=config.read_timeout)

    # --- PaymentIntents ---------------------------------------------------------------
    def create_payment_intent(
        self, *, idempotency_key: str, amount: int, currency: str, payment_method: str,
        metadata: dict[str, str], description: str = "",
    ) -> GatewayResult:
        form: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "payment_method": payment_method,
            "confirm": "true",
            # One step, no redirects: anything needing the customer answers requires_action.
            "payment_method_types[]": "card",
        }
        form.update(canonical_metadata(metadata))
        if description:
            form["description"] = description
        return self._call("POST", "/v1/payment_intents", data=form, idempotency_key=idempotency_key)

    def retrieve_payment_intent(self, gateway_id: str) -> GatewayResult:
        return self._call("GET", f"/v1/payment_intents/{path_id(gateway_id)}")

    def cancel_payment_intent(self, *, gateway_id: str, idempotency_key: str) -> GatewayResult:
        return self._call("POST", f"/v1/payment_intents/{path_id(gateway_id)}/cancel", data={},
                          idempotency_key=idempotency_key)

    def create_refund(self, *, idempotency_key: str, payment_intent: str, amount: int,
                      metadata: dict[str, str]) -> GatewayResult:
        form: dict[str, Any] = {"payment_intent": payment_intent, "amount": amount}
        form.update(canonical_metadata(metadata))
        return self._call("POST", "/v1/refunds", data=form, idempotency_key=idempotency_key)

    def retrieve_refund(self, gateway_id: str) -> GatewayResult:
        return self._call("GET", f"/v1/refunds/{path_id(gateway_id)}")

    def probe(self, *, timeout: float = 3.0) -> float:
        """A call with no financial side effect; returns its latency in seconds.

        One try, bounded by `timeout`: a health signal, not a payment, so no retries."""
        started = time.perf_counter()
        result = self._call("GET", "/v1/balance", use_breaker=False, single_try_timeout=timeout)
        if result.ok:
            return time.perf_counter() - started
        if result.outcome == "auth_refused":
            raise GatewayCredentialsRefused(f"gateway refuses our API key ({result.http_status})")
        if result.outcome == "timeout":
            raise GatewayTimeout("gateway probe timed out")
        if result.outcome == "connect_error":
            raise GatewayUnavailable("gateway refused the connection")
        raise GatewayError(f"gateway probe answered {result.http_status or result.outcome}")

    # --- The one place a request leaves the process -------------------------------------
    def _call(self, method: str, path: str, *, data: dict[str, Any] | None = None,
              idempotency_key: str | None = None, use_breaker: bool = True,
              single_try_timeout: float | None = None) -> GatewayResult:
        permit = slot = None
        if use_breaker and self.limiter is not None:
            # Before the breaker: a half-open probe taken and then refused here would hold the
            # fleet's only probe lease until it expires.
            slot = self.limiter.try_acquire()
            if slot is None:
                # Not logged one by one: under overload that is hundreds of lines a second. The
                # limiter counts them; the health run warns (payment_http: gateway_saturated).
                return GatewayResult(outcome="saturated", error_code="gateway_saturated",
                                     error_message="The payment gateway is busy; nothing was sent.",
                                     retry_after=self.limiter.retry_after())
        if use_breaker and self.breaker is not None:
            try:
                permit = self.breaker.before_call()
            except CircuitOpenError as exc:
                if slot is not None and self.limiter is not None:
                    self.limiter.release(slot, signal="ignored")
                return GatewayResult(outcome="circuit_open", error_code="circuit_open",
                                     error_message="The payment gateway is failing; calls are paused.",
                                     retry_after=exc.retry_after)
        started = time.monotonic()
        log = start_attempt_log()
        timeout = self.timeout
        if single_try_timeout is not None:
            # A budget as long as the deadline leaves no room for a second try.
            timeout = Timeout(connect=min(self.config.connect_timeout, single_try_timeout), read=single_try_timeout)
            set_deadline(started + single_try_timeout, single_try_timeout)
        else:
            # The deadline counts from when the request reached the server, not from now: its
            # client has been waiting since. A first try never outlives it either.
            deadline_at = started + self.config.deadline
            arrived = queueing.arrived_at()
            if arrived is not None:
                deadline_at = min(deadline_at, arrived + self.config.deadline)
                left = max(0.1, deadline_at - started)
                if left < self.config.read_timeout + self.config.connect_timeout:
                    timeout = Timeout(connect=min(self.config.connect_timeout, left), read=left)
            set_deadline(deadline_at, self.config.read_timeout + self.config.connect_timeout)
        response = None
        error: BaseException | None = None
        body_error = False
        try:
            # No redirects: a payment is never re-sent to another address.
            # requests hands a urllib3 Timeout to urllib3 as it is (separate connect and read).
            response = self.session.send(self._prepare(method, path, data, idempotency_key), timeout=timeout,  # type: ignore[arg-type]  # a urllib3 Timeout, which requests passes through
                                         allow_redirects=False)
            body = response.content  # read inside the try: a truncated body raises here
        except requests.RequestException as exc:
            error = exc
            body = b""
            body_error = response is not None or is_body_error(exc)
        except EmptyPoolError as exc:
            # requests lets urllib3's "no pooled connection came free" through as it is: not
            # sent (unless an earlier try of this call was), answered 503 by the API.
            error = exc
            body = b""
            waited = time.monotonic() - started
            log.append(AttemptRecord(time.perf_counter() - waited, waited, None, exc, None, False))
        finally:
            stop_attempt_log()
            clear_deadline()
        elapsed = time.monotonic() - started
        result = self._result(method, log, response, body, error, body_error)
        if slot is not None and self.limiter is not None:
            self.limiter.release(slot, signal=signal_for(result.outcome))
        if permit is not None and self.breaker is not None:
            self.breaker.record(permit, outcome=result.meaning.breaker.value, duration=elapsed)
        self._log(method, path, result, elapsed, idempotency_key)
        record_gateway_call(method=method, path=path, result=result)
        return result

    def _prepare(self, method: str, path: str, data: dict[str, Any] | None,
                 idempotency_key: str | None) -> requests.PreparedRequest:
        """What `Session.request` would build, without re-merging the session's headers,
        cookies and auth into every request (about 6 % of a payment's CPU in the worker): the
        gateway sets no cookies, and the headers, with the API key's, are the session's."""
        prepared = requests.PreparedRequest()
        prepared.method, prepared.url = method, self.base_url + path
        prepared.headers = CaseInsensitiveDict(self.session.headers)  # type: ignore[arg-type]  # all str, set in __init__
        if idempotency_key:
            prepared.headers["Idempotency-Key"] = idempotency_key
        if data is not None:
            prepared.body = urlencode(data).encode()
            prepared.headers["Content-Type"] = "application/x-www-form-urlencoded"
            prepared.headers["Content-Length"] = str(len(prepared.body))
        elif method not in {"GET", "HEAD"}:
            prepared.headers["Content-Length"] = "0"
        return prepared

    def _result(self, method: str, log: list[AttemptRecord], response: requests.Response | None,
                body: bytes, error: BaseException | None, body_error: bool) -> GatewayResult:
        attempts = [attempt_of(record, method, "pool_timeout" if isinstance(record.error, EmptyPoolError) else None)
                    for record in log]
        sent = any(record.sent for record in log)
        if error is not None or response is None:
            if body_error and attempts:
                attempts[-1].outcome = "bad_response"
            outcome = attempts[-1].outcome if attempts else error_outcome(error)
            if outcome == "ok":
                outcome = "bad_response"
            return GatewayResult(outcome=outcome, attempts=attempts, sent=sent or body_error,
                                 error_code=outcome, error_message=error.__class__.__name__ if error else "")
        try:
            data = json.loads(body) if body else {}
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            if attempts:
                attempts[-1].outcome = "bad_response"
            return GatewayResult(outcome="bad_response", http_status=response.status_code, attempts=attempts,
                                 sent=True, error_code="bad_response", error_message="unparseable gateway answer")
        err = data.get("error") if response.status_code >= 400 else None
        err = err if isinstance(err, dict) else {}
        # The body tells a card error or an idempotency error from other 4xx of the same status.
        outcome = answers.classify(response.status_code, err, method=method)
        if attempts:
            attempts[-1].outcome = outcome
        result = GatewayResult(outcome=outcome, http_status=response.status_code, data=data, attempts=attempts,
                               sent=sent)
        if response.status_code >= 400:
            result.error_code = str(err.get("decline_code") or err.get("code") or err.get("type") or "")
            result.error_message = str(err.get("message") or "")[:500]
            retry_after = response.headers.get("Retry-After")
            if retry_after and retry_after.isdigit():
                result.retry_after = float(retry_after)
        return result

    def _log(self, method: str, path: str, result: GatewayResult, elapsed: float, key: str | None) -> None:
        category = {
            "timeout": "payment_timeout",
            "connect_error": "payment_connection_error",
            "http_5xx": "gateway_5xx",
            "rate_limited": "gateway_rate_limited",
            "bad_response": "gateway_bad_response",
            "circuit_open": "circuit_open",
            "saturated": "gateway_saturated",
            "conflict": "gateway_conflict",
            "auth_refused": "gateway_auth_refused",
            "idempotency_mismatch": "gateway_idempotency_mismatch",
            "invalid_request": "gateway_rejected_request",
            "payment_method_invalid": "payment_method_refused",
            "pool_timeout": "http_pool_full",
        }.get(result.outcome)
        extra = {
            "category": category or "gateway_call",
            "method": method,
            "path": path.split("?")[0],
            "outcome": result.outcome,
            "http_status": result.http_status,
            "attempts": len(result.attempts),
            "duration_ms": round(elapsed * 1000, 2),
            "idempotency_key": key,
            "gateway_request_id": result.attempts[-1].request_id if result.attempts else None,
        }
        # Successes at DEBUG: one formatted line per payment is measurable at high rates. A
        # request the gateway calls wrong is our defect: an error, whoever sent the payment.
        level = logging.ERROR if result.meaning.defect else logging.WARNING if category else logging.DEBUG
        logger.log(level, "gateway %s %s -> %s", method, extra["path"], result.outcome, extra=extra)
