"""Console forms for acting on one payment: settle it by hand, refund it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Sum

from payments.models import REFUND_RESERVING, Payment


class SettleForm(forms.Form):
    gateway_id = forms.CharField(
        label="Gateway intent id", max_length=255,
        help_text="The payment's intent at the gateway (pi_…); read from it again before anything is applied.")
    note = forms.CharField(label="Note for the audit trail", max_length=500, widget=forms.Textarea(attrs={"rows": 3}),
                           help_text="Why this is settled by hand (ticket, what finance confirmed).")


class RefundForm(forms.Form):
    amount = forms.IntegerField(min_value=1, help_text="In the currency's minor unit (cents; yen for JPY).")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Why it is refunded: kept with the refund and in the audit trail.")

    def __init__(self, *args: Any, payment: Payment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reserved = (payment.refunds.filter(status__in=REFUND_RESERVING).aggregate(total=Sum("amount"))["total"] or 0)
        self.left = payment.amount - reserved
        self.fields["amount"].initial = self.left
        self.fields["amount"].widget.attrs["max"] = self.left
