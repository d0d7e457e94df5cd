"""Health runs, per-component snapshots, alerts, silences and the notifications sent about alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Status(models.TextChoices):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


class Severity(models.TextChoices):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


# Stored beside the name so that "worst first" is an index scan, not a CASE expression.
SEVERITY_RANK: dict[str, int] = {"critical": 40, "error": 30, "warning": 20, "info": 10}


class AlertStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


ACTIVE_ALERT_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class HealthCheckRun(models.Model):
    """One health check: its tick is unique, so two beats or a redelivery never make two runs."""

    tick = models.DateTimeField(unique=True, help_text="Start of the check interval this run belongs to.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.FloatField()
    status = models.CharField(max_length=16, choices=Status.choices)
    ran_on = models.CharField(max_length=200, help_text="host:pid of the worker that ran it.")

    class Meta:
        ordering = ["-tick"]
        get_latest_by = "tick"

    def __str__(self) -> str:
        return f"{self.tick:%Y-%m-%d %H:%M:%S} {self.status}"


class ComponentSnapshot(models.Model):
    """What one check measured in one run; the columns are the figures ops chart over time."""

    run = models.ForeignKey(HealthCheckRun, on_delete=models.CASCADE, related_name="snapshots", db_index=False)
    # A copy of the run's start, so time-range reads and pruning need no join.
    checked_at = models.DateTimeField()
    component = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    message = models.CharField(max_length=300, blank=True)
    utilisation_pct = models.FloatField(null=True, blank=True)
    in_use = models.IntegerField(null=True, blank=True)
    maximum = models.IntegerField(null=True, blank=True)
    waiting = models.IntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    errors = models.IntegerField(null=True, blank=True)
    figures = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # Also the index behind run -> snapshots.
            models.UniqueConstraint(fields=["run", "component"], name="health_snapshot_one_per_component"),
        ]
        indexes = [
            models.Index(fields=["component", "checked_at"], name="health_snap_component_time"),
            models.Index(fields=["checked_at"], name="health_snap_time"),
        ]

    def __str__(self) -> str:
        return f"{self.component} {self.status} at {self.checked_at:%H:%M:%S}"


class Alert(models.Model):
    """One problem of one component; at most one is active (open or acknowledged) per condition."""

    component = models.CharField(max_length=32)
    condition = models.CharField(max_length=64)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    severity_rank = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    message = models.CharField(max_length=500)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    occurrences = models.PositiveIntegerField(default=1)
    streak = models.PositiveIntegerField(default=1, help_text="Consecutive checks the condition was present.")
    absent_checks = models.PositiveSmallIntegerField(default=0, help_text="Consecutive checks it was absent.")
    reopened = models.PositiveIntegerField(default=0, help_text="Times it came back after being resolved.")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledgement_note = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    resolution_note = models.TextField(blank=True)
    payments_in_flight = models.PositiveIntegerField(null=True, blank=True,
                                                     help_text="Most payments its component left unfinished at once while it was open "
                                                               "(for the payments check: in flight).")
    amount_affected = models.JSONField(default=dict, blank=True,
                                       help_text="Their amounts per currency, in minor units.")
    notified_rank = models.PositiveSmallIntegerField(default=0, help_text="Severity rank last notified.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-severity_rank", "-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["component", "condition"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="health_alert_one_active",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-severity_rank"], name="health_alert_status_rank"),
            models.Index(fields=["component", "condition", "-resolved_at"], name="health_alert_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.component}/{self.condition} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_ALERT_STATUSES


class Silence(models.Model):
    """Mutes notifications for a component, a condition, or one condition of one component."""

    component = models.CharField(max_length=32, blank=True, help_text="Empty: every component.")
    condition = models.CharField(max_length=64, blank=True, help_text="Empty: every condition.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ends_at"]
        constraints = [
            models.CheckConstraint(condition=~Q(component="", condition=""), name="health_silence_has_target"),
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="health_silence_window"),
        ]
        indexes = [models.Index(fields=["ends_at"], name="health_silence_ends")]

    def __str__(self) -> str:
        return f"{self.component or '*'}/{self.condition or '*'} until {self.ends_at:%Y-%m-%d %H:%M}"

    def matches(self, *, component: str, condition: str) -> bool:
        return self.component in ("", component) and self.condition in ("", condition)


class NotificationEvent(models.TextChoices):
    RAISED = "raised"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class AlertNotification(models.Model):
    """One message about one alert change; each channel is marked once sent, so a retry never repeats it."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    # A sender holds the row until then: a task and its resend never send at the same time.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event} {self.alert}"


# --- Console drills ----------------------------------------------------------------------------
class DrillKind(models.TextChoices):
    DB_POOL = "db_pool", "Database pool stress"
    HTTP_POOL = "http_pool", "HTTP pool (payment Session)"
    PAYMENT_TIMEOUT = "payment_timeout", "Payment timeout"
    LOG_TEST = "log_test", "Log test"


class DrillStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"


ACTIVE_DRILL_STATUSES = (DrillStatus.QUEUED, DrillStatus.RUNNING)


class DrillRun(models.Model):
    """One drill started from the console: what was asked, how far it got, and what it found.

    At most one run of a kind is queued or running at a time (a partial unique index), so
    a drill can never be started twice at once; a run past `deadline_at` is abandoned."""

    kind = models.CharField(max_length=32, choices=DrillKind.choices)
    status = models.CharField(max_length=16, choices=DrillStatus.choices, default=DrillStatus.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="{done, total, message} while it runs.")
    result = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(help_text="A run still active after this is abandoned.")
    ran_on = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that ran it.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind"], condition=Q(status__in=["queued", "running"]),
                                    name="health_drill_one_active_per_kind"),
        ]
        indexes = [models.Index(fields=["-created_at"], name="health_drill_created")]
        permissions = [
            ("force_breaker", "Can force the payment gateway's circuit breaker open or closed"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_DRILL_STATUSES


class BreakerOverride(models.Model):
    """One forcing of the gateway's circuit breaker from the console: the object its audit
    entries (forced, ended) are about, so they show on the audit trail under one name."""

    state = models.CharField(max_length=8, choices=[("open", "open"), ("closed", "closed")])
    reason = models.CharField(max_length=200)
    until = models.DateTimeField(help_text="The override ends by itself then.")
    forced_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Ended from the console before `until`.")
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    end_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"breaker forced {self.state} at {self.created_at:%Y-%m-%d %H:%M} UTC"
