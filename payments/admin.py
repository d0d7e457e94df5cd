"""Console pages for payments, refunds and API clients."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control

from payments import services
from payments.selectors import payment_unknown_summary
from payments.models import ApiClient, Payment, PaymentAttempt, Refund


class CurrencyFilter(admin.SimpleListFilter):
    """Currencies seen in the last 30 days: a DISTINCT over every payment ever made would
    read the whole table on each page of the list."""

    title = "currency"
    parameter_name = "currency__exact"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        since = timezone.now() - timedelta(days=30)
        currencies = (Payment.objects.filter(created__gte=since).order_by().values_list("currency", flat=True)
                      .distinct())
        return [(c, c.upper()) for c in sorted(currencies)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Payment]) -> QuerySet[Payment]:
        return queryset.filter(currency=self.value()) if self.value() else queryset


class PaymentAttemptInline(admin.TabularInline):
    model = PaymentAttempt
    extra = 0
    can_delete = False
    fields = ("number", "operation", "started_at", "duration_ms", "outcome", "http_status", "gateway_request_id", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ("id", "amount", "status", "gateway_id", "failure_code", "created")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "amount_display", "currency", "reference", "client", "attempt_count", "created")
    list_filter = ("status", CurrencyFilter, ("created", admin.DateFieldListFilter))
    search_fields = ("=id", "=reference", "=gateway_id")
    ordering = ("-created",)
    list_select_related = ("client",)
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is the slow part
    date_hierarchy = None
    inlines = (PaymentAttemptInline, RefundInline)
    actions = ("settle_now",)
    readonly_fields = [f.name for f in Payment._meta.fields]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):  # type: ignore[no-untyped-def]
        summary = [{**row, "major": row["amount"] / 100} for row in payment_unknown_summary()]
        return super().changelist_view(request, {**(extra_context or {}), "unknown_summary": summary})

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Payment) -> str:
        return f"{obj.amount / 100:,.2f}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Settle now (ask the gateway)", permissions=["change"])
    def settle_now(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        settled = 0
        for payment in queryset.filter(status__in=["unknown", "processing"])[:100]:
            result = services.payment_settle(payment_id=payment.id)
            # The admin's own log is the audit trail: who asked, when, and what came of it.
            self.log_change(request, payment, f"Settle now: {payment.status} -> {result.status}")
            if result.status not in {"unknown", "processing"}:
                settled += 1
        self.message_user(request, f"{settled} payment(s) settled.", messages.SUCCESS)


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "is_active", "created", "last_used_at", "revoked_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "is_active", "created", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "is_active", "created", "last_used_at", "revoked_at")
    actions = ("rotate", "revoke")

    def save_model(self, request: HttpRequest, obj: ApiClient, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if change:
            obj.save(update_fields=["name"])
            return
        client, raw_key = services.api_key_create(name=obj.name, created_by=request.user)
        obj.pk, obj.prefix = client.pk, client.prefix
        request._new_api_keys = [(client, raw_key)]  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: ApiClient, post_url_continue: str | None = None) -> HttpResponse:
        return self._new_keys_page(request, getattr(request, "_new_api_keys", []), "A new API key was created.")

    @admin.action(description="Rotate the selected keys (the old key stops working at once)", permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> HttpResponse:
        rotated = []
        for client in queryset.order_by("name"):
            old_prefix = client.prefix
            rotated.append((client, services.api_key_rotate(client=client)))
            self.log_change(request, client, f"Rotated the API key (old prefix {old_prefix}, new {client.prefix})")
        return self._new_keys_page(request, rotated, f"{len(rotated)} key(s) rotated; the old ones no longer work.")

    def _new_keys_page(self, request: HttpRequest, keys: list[tuple[ApiClient, str]], intro: str) -> HttpResponse:
        # The key goes to this response only: never to Django's messages (a readable, if signed,
        # cookie by default), the session or any table.
        response = TemplateResponse(request, "admin/payments/apiclient/new_key.html", {
            **self.admin_site.each_context(request), "title": "New API key", "keys": keys, "intro": intro,
            "opts": self.model._meta,
        })
        add_never_cache_headers(response)
        patch_cache_control(response, no_store=True, private=True)
        return response

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset.filter(is_active=True):
            services.api_key_revoke(client=client)
            self.log_change(request, client, "Revoked the API key")
        self.message_user(request, "Revoked.", messages.SUCCESS)
