"""Payments, their attempts at the gateway, refunds, API clients and idempotency records."""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.db import models
from django.db.models import Q

from payments.ids import new_id


class ApiClient(models.Model):
    """A caller of the payment API. The key itself is never stored, only its SHA-256."""

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=16, unique=True, help_text="Shown to identify the key; not secret.")
    key_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class PaymentStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


S = PaymentStatus
# The only moves a payment's status may make; services refuse anything else.
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PROCESSING, S.FAILED}),
    # Back to pending only when nothing reached the gateway (refused connection, open breaker).
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED, S.REQUIRES_ACTION, S.UNKNOWN, S.PENDING}),
    S.UNKNOWN: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED, S.REQUIRES_ACTION}),
    # The customer authenticates (or not) at the gateway; we learn it from its events or by asking.
    S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED, S.CANCELED, S.UNKNOWN}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
    S.REFUNDED: frozenset(),
}
# Where a payment's outcome is settled for good: nothing moves it but a refund.
FINAL_STATUSES = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED, S.REFUNDED, S.PARTIALLY_REFUNDED})
# The gateway may have acted and we do not know how: settlement asks it.
UNSETTLED_STATUSES = frozenset({S.UNKNOWN, S.PROCESSING})
# Waiting for the customer at the gateway: followed by its events and by asking on the backoff.
AWAITING_STATUSES = frozenset({S.REQUIRES_ACTION})
# What an operator may settle by hand from the console, to what the gateway holds.
SETTLED_BY_HAND = UNSETTLED_STATUSES | AWAITING_STATUSES


class Payment(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=partial(new_id, "pay"), editable=False)
    # Indexed as the first column of payment_client_created and the idempotency constraint;
    # an index of its own would only be one more write per INSERT and UPDATE.
    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="payments", db_index=False)
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    amount = models.PositiveBigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3)
    payment_method = models.CharField(max_length=255, help_text="A gateway token (pm_…), never card data.")
    reference = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    gateway_id = models.CharField(max_length=255, null=True, blank=True)
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_message = models.CharField(max_length=500, blank=True, default="")
    # What the customer must do while requires_action: the intent's client_secret and the
    # gateway's own next_action, as the API shows them; cleared when the payment moves on.
    next_action = models.JSONField(null=True, blank=True)
    # Only refunds the gateway confirmed; amounts reserved by refunds in flight are not in it.
    amount_refunded = models.PositiveBigIntegerField(default=0)
    attempt_count = models.PositiveIntegerField(default=0)
    # Settlement of unknown outcomes: how often it was tried and when to try next.
    settle_count = models.PositiveIntegerField(default=0)
    next_settle_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name="payment_unique_idempotency_key"),
            models.UniqueConstraint(fields=["gateway_id"], name="payment_unique_gateway_id",
                                    condition=Q(gateway_id__isnull=False)),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(amount_refunded__lte=models.F("amount")),
                                   name="payment_refund_within_amount"),
            models.CheckConstraint(condition=Q(status__in=PaymentStatus.values), name="payment_status_valid"),
        ]
        indexes = [
            models.Index(fields=["client", "-created"], name="payment_client_created"),
            # Every payment is written twice (opened, then answered) and each write of a row that
            # changes its status is a new entry in every index: the sweeps only look for the
            # unfinished, and searches only for a reference that was given.
            models.Index(fields=["status", "next_settle_at"], name="payment_status_unfinished",
                         condition=Q(status__in=["pending", "processing", "unknown", "requires_action"])),
            models.Index(fields=["reference"], name="payment_reference_given", condition=~Q(reference="")),
            models.Index(fields=["-created"], name="payment_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"

    @property
    def gateway_idempotency_key(self) -> str:
        """Identical on every retry and every later re-submission of this payment."""
        return f"payops-{self.id}"


class AttemptOutcome(models.TextChoices):
    OK = "ok"
    DECLINED = "declined"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    BAD_RESPONSE = "bad_response"
    CIRCUIT_OPEN = "circuit_open"
    CONFLICT = "conflict"
    AUTH_REFUSED = "auth_refused"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    POOL_TIMEOUT = "pool_timeout"
    PAYMENT_METHOD_INVALID = "payment_method_invalid"


class PaymentAttempt(models.Model):
    """One request on the wire to the gateway, including those urllib3 retried on its own."""

    # attempt_unique_number (payment, number) is the index for the foreign key.
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    number = models.PositiveIntegerField()
    operation = models.CharField(max_length=20, default="create")  # create, retrieve, refund
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    outcome = models.CharField(max_length=32, choices=AttemptOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    gateway_request_id = models.CharField(max_length=255, blank=True, default="")
    error = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        ordering = ["payment", "number"]
        constraints = [models.UniqueConstraint(fields=["payment", "number"], name="attempt_unique_number")]

    def __str__(self) -> str:
        return f"{self.payment_id}#{self.number} {self.outcome}"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"


# A refund in these holds its amount against the payment: two refunds can never exceed it.
REFUND_RESERVING = frozenset({RefundStatus.PENDING, RefundStatus.UNKNOWN, RefundStatus.SUCCEEDED})


class Refund(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=partial(new_id, "ref"), editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="refunds")
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    amount = models.PositiveBigIntegerField()
    status = models.CharField(max_length=20, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    gateway_id = models.CharField(max_length=255, null=True, blank=True)
    failure_code = models.CharField(max_length=100, blank=True, default="")
    failure_message = models.CharField(max_length=500, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="", help_text="Why ops refunded, from the console.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    # Settlement of unknown outcomes, as for payments.
    settle_count = models.PositiveIntegerField(default=0)
    next_settle_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name="refund_unique_idempotency_key"),
            models.UniqueConstraint(fields=["gateway_id"], name="refund_unique_gateway_id",
                                    condition=Q(gateway_id__isnull=False)),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.status}"

    @property
    def gateway_idempotency_key(self) -> str:
        return f"payops-{self.id}"


class IdempotencyRecord(models.Model):
    """Our own Stripe-style idempotency: one per (client, key), with the final answer to replay.

    `locked_until` is a lease: while a request works on the key, a concurrent one with the
    same key gets 409 instead of a second gateway charge.
    """

    # idempotency_unique_key (client, key) is the index for the foreign key.
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    resource_id = models.CharField(max_length=32, blank=True, default="")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "key"], name="idempotency_unique_key")]
        indexes = [models.Index(fields=["created"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.client_id}:{self.key}"


class GatewayEventStatus(models.TextChoices):
    RECEIVED = "received"  # stored, waiting for a worker
    PROCESSING = "processing"  # claimed by a worker (a stale claim is taken over)
    PROCESSED = "processed"
    IGNORED = "ignored"  # authentic, but about nothing of ours or of a type we do not act on
    FAILED = "failed"  # processing raised: ops look and process it again


class GatewayEvent(models.Model):
    """An event the gateway sent us, stored as received before anything acts on it.

    The gateway delivers at least once and in any order: `event_id` is unique so a second
    delivery stores nothing, and the row's status is the claim that applies it at most once."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    # The id of the event's object (pi_…, re_…, ch_…): what the console searches by.
    object_id = models.CharField(max_length=255, blank=True, default="")
    payload = models.JSONField(help_text="The event as the gateway signed it.")
    gateway_created = models.DateTimeField(null=True, blank=True, help_text="When the gateway made the event.")
    received_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=GatewayEventStatus.choices, default=GatewayEventStatus.RECEIVED)
    action = models.CharField(max_length=500, blank=True, default="", help_text="What processing did.")
    error = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        permissions = [("process_gatewayevent", "Can process a gateway event again")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=GatewayEventStatus.values), name="gateway_event_status_valid"),
        ]
        indexes = [
            models.Index(fields=["object_id"], name="gateway_event_object", condition=~Q(object_id="")),
            models.Index(fields=["-received_at"], name="gateway_event_received"),
            # The console's failed list and the sweep of events left unprocessed.
            models.Index(fields=["status", "received_at"], name="gateway_event_unfinished",
                         condition=Q(status__in=["received", "processing", "failed"])),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type} {self.status}"
