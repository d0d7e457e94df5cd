"""The environment variables added for operations (signed alert webhooks, leak detection):
documented defaults and refusals that name the variable."""

from __future__ import annotations

from tests.test_settings import PROD_SECRET, manage

PROD = {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": PROD_SECRET, "DJANGO_ALLOWED_HOSTS": "pay.example.com",
        "PAYMENT_GATEWAY_API_KEY": "sk_live_from_vault"}


def test_a_short_alert_webhook_secret_is_refused() -> None:
    result = manage("check", DJANGO_DEBUG="true", ALERT_WEBHOOK_SECRET="short")
    assert result.returncode == 2 and "ALERT_WEBHOOK_SECRET" in result.stderr


def test_production_refuses_an_alert_webhook_without_its_secret() -> None:
    result = manage("check", ALERT_WEBHOOK_URL="https://hooks.example.com/payops", **PROD)
    assert result.returncode == 2 and "ALERT_WEBHOOK_SECRET" in result.stderr
    signed = manage("check", ALERT_WEBHOOK_URL="https://hooks.example.com/payops",
                    ALERT_WEBHOOK_SECRET="s" * 16 + "3cr3t" * 4, **PROD)
    assert signed.returncode == 0, signed.stderr


def test_the_leak_threshold_defaults_to_a_minute_and_a_bad_one_is_refused() -> None:
    default = manage("shell", "--no-imports", "-c", "from django.conf import settings as s; print(s.DB_LEAK_THRESHOLD)",
                     DJANGO_DEBUG="true")
    assert default.returncode == 0 and default.stdout.split() == ["60.0"], default.stderr
    for bad in ("soon", "0"):
        result = manage("check", DJANGO_DEBUG="true", DB_LEAK_THRESHOLD=bad)
        assert result.returncode == 2 and "DB_LEAK_THRESHOLD" in result.stderr


def test_every_process_watches_for_stale_health_runs_by_default() -> None:
    code = "from django.conf import settings as s; print(s.HEALTH_STALE_WATCH)"
    # Unset (the suite's own environment turns it off for its processes).
    assert manage("shell", "--no-imports", "-c", code, DJANGO_DEBUG="true",
                  HEALTH_STALE_WATCH="").stdout.split() == ["True"]
    result = manage("check", DJANGO_DEBUG="true", HEALTH_STALE_WATCH="maybe")
    assert result.returncode == 2 and "HEALTH_STALE_WATCH" in result.stderr
