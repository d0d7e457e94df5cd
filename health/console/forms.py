"""Forms of the console's pages: the note or reason every change carries, and bounded drill parameters."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings

from health.console.drills.limits import MAX_CONCURRENCY, MAX_HOLD_MS, MAX_POOL, MAX_ROUNDS
from health.models import DrillKind

SILENCE_CHOICES = [("15", "15 minutes"), ("60", "1 hour"), ("240", "4 hours"), ("480", "8 hours"),
                   ("1440", "24 hours")]


class AlertNoteForm(forms.Form):
    note = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                           help_text="Why: what you saw or did. It is recorded with your name.")


class AlertSilenceForm(forms.Form):
    duration = forms.TypedChoiceField(choices=SILENCE_CHOICES, coerce=int, initial="60",
                                      help_text="Notifications for these conditions stop for this long; "
                                                "alerts are still recorded and shown.")
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def silence_for(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["duration"])


class BreakerForceForm(forms.Form):
    state = forms.ChoiceField(choices=[("open", "Open: fail fast, send nothing to the gateway"),
                                       ("closed", "Closed: send every call, whatever the failure rate")])
    reason = forms.CharField(max_length=200)
    minutes = forms.IntegerField(min_value=1, max_value=1440, initial=15, label="Expires after (minutes)")


class BreakerClearForm(forms.Form):
    reason = forms.CharField(max_length=200, label="Reason for ending the override")


class DrillForm(forms.Form):
    """A drill's parameters; `kind` names the drill it starts."""

    kind: DrillKind


class DbPoolDrillForm(DrillForm):
    kind = DrillKind.DB_POOL
    concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, initial=25,
                                     help_text="Queries started at the same moment.")
    pool_max = forms.IntegerField(min_value=1, max_value=MAX_POOL, initial=settings.DB_MAX_CONNECTIONS,
                                  help_text=f"Connections in the pool (this worker's own pool has "
                                            f"{settings.DB_MAX_CONNECTIONS}; another size gets a pool of its own).")
    hold_ms = forms.IntegerField(min_value=50, max_value=MAX_HOLD_MS, initial=1000,
                                 help_text="How long each query holds its connection (pg_sleep).")


class HttpPoolDrillForm(DrillForm):
    kind = DrillKind.HTTP_POOL
    concurrency = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY, initial=15,
                                     help_text=f"Requests at once (the payment pool holds {settings.PAYMENT_POOL_MAXSIZE}).")
    rounds = forms.IntegerField(min_value=1, max_value=MAX_ROUNDS, initial=2,
                                help_text="Bursts one after the other: later ones reuse the connections.")


class PaymentTimeoutDrillForm(DrillForm):
    kind = DrillKind.PAYMENT_TIMEOUT
    timeouts = forms.IntegerField(min_value=1, max_value=settings.PAYMENT_RETRY_ATTEMPTS,
                                  initial=settings.PAYMENT_RETRY_ATTEMPTS,
                                  help_text=f"Tries the sandbox holds past the timeout (of "
                                            f"{settings.PAYMENT_RETRY_ATTEMPTS}); all of them: the outcome is "
                                            f"unknown and then settled; fewer: a retry succeeds.")
    amount = forms.IntegerField(min_value=50, max_value=10000, initial=100, help_text="USD cents, sandbox money.")


class LogTestDrillForm(DrillForm):
    kind = DrillKind.LOG_TEST


DRILL_FORMS: dict[str, type[DrillForm]] = {
    form.kind: form for form in (DbPoolDrillForm, HttpPoolDrillForm, PaymentTimeoutDrillForm, LogTestDrillForm)
}
