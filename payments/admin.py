"""Console pages for payments, refunds and API clients."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_cache_control

from payments.forms import RefundForm, SettleForm
from payments.models import SETTLED_BY_HAND, ApiClient, Payment, PaymentAttempt, Refund, RefundStatus
from payments.money import money_format
from payments.selectors import payment_unknown_summary, refund_unknown_summary, with_display
from payments.services import refunds
from payments.services.api_keys import api_key_create, api_key_revoke, api_key_rotate
from payments.services.settlement import (
    SETTLED_BY_ASKING,
    SettleRefused,
    payment_intent_read,
    payment_settle,
    payment_settle_by_hand,
)


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

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ("id", "amount", "status", "gateway_id", "failure_code", "reason", "created_by", "created")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
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

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        context = {"unknown_summary": with_display(payment_unknown_summary()),
                   "unknown_refunds": with_display(refund_unknown_summary())}
        return super().changelist_view(request, {**(extra_context or {}), **context})

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Payment) -> str:
        return money_format(amount=obj.amount, currency=obj.currency)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Settle now (ask the gateway)", permissions=["change"])
    def settle_now(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        settled = 0
        for payment in queryset.filter(status__in=SETTLED_BY_ASKING)[:100]:
            result = payment_settle(payment_id=payment.id)
            # The admin's own log is the audit trail: who asked, when, and what came of it.
            self.log_change(request, payment, f"Settle now: {payment.status} -> {result.status}")
            if result.status != payment.status:
                settled += 1
        self.message_user(request, f"{settled} payment(s) settled.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("<str:object_id>/settle/", self.admin_site.admin_view(self.settle_view),
                 name="payments_payment_settle"),
            path("<str:object_id>/refund/", self.admin_site.admin_view(self.refund_view),
                 name="payments_payment_refund"),
        ]
        return own + super().get_urls()

    def settle_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Settle one payment by hand to the state the gateway holds, read fresh, with a note."""
        payment = self._payment_to_act_on(request, object_id)
        form = SettleForm(request.POST or None, initial={"gateway_id": payment.gateway_id or ""})
        preview, problem = None, ""
        if form.is_valid():
            gateway_id = form.cleaned_data["gateway_id"]
            try:
                if "apply" in request.POST:
                    before = payment.status
                    settled = payment_settle_by_hand(payment_id=payment.pk, gateway_id=gateway_id)
                    self.log_change(request, settled, f"Settled by hand from intent {gateway_id}: {before} -> "
                                                      f"{settled.status}. Note: {form.cleaned_data['note']}")
                    self.message_user(request, f"{settled.id} is now {settled.status}.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))
                preview = payment_intent_read(payment=payment, gateway_id=gateway_id)
            except SettleRefused as exc:
                problem = str(exc)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": payment,
                   "title": f"Settle {payment.id} by hand", "form": form, "preview": preview, "problem": problem}
        return TemplateResponse(request, "admin/payments/payment/settle.html", context)

    def refund_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Refund from the console: the same service as the API, audited with the reason."""
        payment = self._payment_to_act_on(request, object_id)
        form = RefundForm(request.POST or None, payment=payment)
        if form.is_valid():
            try:
                refund = refunds.refund_create(client=payment.client, record=None, payment_id=payment.pk,
                                               amount=form.cleaned_data["amount"], reason=form.cleaned_data["reason"],
                                               created_by=request.user)
            except refunds.RefundRefused as exc:
                form.add_error("amount" if exc.param == "amount" else None, exc.message)
            else:
                refund = refunds.refund_submit(refund_id=refund.id)
                self.log_change(request, payment, f"Refund {refund.id} of {money_format(amount=refund.amount, currency=payment.currency)}: "
                                                  f"{refund.status}. Reason: {refund.reason}")
                level = messages.SUCCESS if refund.status == RefundStatus.SUCCEEDED else messages.WARNING
                self.message_user(request, f"Refund {refund.id}: {refund.status}.", level)
                return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "original": payment,
                   "title": f"Refund {payment.id}", "form": form,
                   "amount": money_format(amount=payment.amount, currency=payment.currency),
                   "refunded": money_format(amount=payment.amount_refunded, currency=payment.currency)}
        return TemplateResponse(request, "admin/payments/payment/refund.html", context)

    def _payment_to_act_on(self, request: HttpRequest, object_id: str) -> Payment:
        payment = get_object_or_404(Payment.objects.select_related("client"), pk=object_id)
        if not self.has_change_permission(request, payment):
            raise PermissionDenied
        return payment

    def render_change_form(self, request: HttpRequest, context: dict, *args, **kwargs) -> HttpResponse:
        payment = context.get("original")
        if payment is not None:
            context["can_settle_by_hand"] = payment.status in SETTLED_BY_HAND and self.has_change_permission(request)
            context["can_refund"] = payment.status in refunds.REFUNDABLE and self.has_change_permission(request)
            context["amount_display"] = money_format(amount=payment.amount, currency=payment.currency)
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ("id", "payment", "status", "amount_display", "failure_code", "created_by", "created")
    list_filter = ("status", ("created", admin.DateFieldListFilter))
    search_fields = ("=id", "=payment__id", "=gateway_id")
    ordering = ("-created",)
    list_select_related = ("payment", "created_by")
    show_full_result_count = False
    readonly_fields = [f.name for f in Refund._meta.fields]
    actions = ("settle_now",)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Refund) -> str:
        return money_format(amount=obj.amount, currency=obj.payment.currency)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a refund starts from its payment's page, where its amount is checked

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("payments.change_payment")

    @admin.action(description="Settle now (ask the gateway)", permissions=["change"])
    def settle_now(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset.filter(status="unknown")[:100]:
            result = refunds.refund_settle(refund_id=refund.id)
            self.log_change(request, refund, f"Settle now: {refund.status} -> {result.status}")
        self.message_user(request, "Asked the gateway.", messages.SUCCESS)


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "is_active", "created", "last_used_at", "revoked_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "is_active", "created", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "is_active", "created", "last_used_at", "revoked_at")
    actions = ("rotate", "revoke")

    def save_model(self, request: HttpRequest, obj: ApiClient, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        client, raw_key = api_key_create(name=obj.name, created_by=request.user)
        obj.pk, obj.prefix = client.pk, client.prefix
        request._new_api_keys = [(client, raw_key)]  # type: ignore[attr-defined]  # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: ApiClient, post_url_continue: str | None = None) -> HttpResponse:
        return self._new_keys_page(request, getattr(request, "_new_api_keys", []), "A new API key was created.")

    @admin.action(description="Rotate the selected keys (the old key stops working at once)", permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> HttpResponse:
        rotated = []
        for client in queryset.order_by("name"):
            old_prefix = client.prefix
            rotated.append((client, api_key_rotate(client=client)))
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
            api_key_revoke(client=client)
            self.log_change(request, client, "Revoked the API key")
        self.message_user(request, "Revoked.", messages.SUCCESS)
