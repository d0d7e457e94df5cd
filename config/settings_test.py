"""Settings for the test suite: the real settings, read from a test environment.

Values already in the environment win, so a run can point at other services.
"""

import os

_TEST_ENV = {
    "DJANGO_READ_DOTENV": "false",  # a developer's .env must not change what the suite tests
    "DJANGO_DEBUG": "true",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/payops",
    "REDIS_URL": "redis://127.0.0.1:6379/1",
    "PAYMENT_GATEWAY_URL": "http://127.0.0.1:8421",
    "PAYMENT_GATEWAY_API_KEY": "sk_test_suite",
    "LOG_LEVEL": "INFO",
    # Short timeouts and backoff so fault scenarios take seconds; the defaults themselves
    # are asserted by tests/test_settings.py in a process without these values.
    "PAYMENT_TIMEOUT": "1000",
    "PAYMENT_CONNECT_TIMEOUT": "500",
    "PAYMENT_RETRY_DELAY": "50",
    "PAYMENT_DEADLINE": "4000",
    "PAYMENT_SETTLE_DELAYS": "1,1,2",
    "BREAKER_OPEN_MS": "1000",
    "PAYMENT_SLOW_CALL_MS": "900",
    # Made-up histories (runs hours old) would trip the dead-man's switch in the background of
    # unrelated tests; the tests of the switch turn it on for the processes they start.
    "HEALTH_STALE_WATCH": "false",
}
for _name, _value in _TEST_ENV.items():
    os.environ.setdefault(_name, _value)

from config.settings import *  # noqa: E402,F401,F403 - the test settings are the settings, overridden

# Test-only endpoints (hold a database connection, and the like) for servers the tests start.
ROOT_URLCONF = "tests.support.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
# Test-only tasks (a task that takes its time, for broker-loss tests) for the workers tests start.
CELERY_IMPORTS = ["tests.support.tasks"]
