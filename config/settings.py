"""Settings for Payment Ops. The environment is read here and only here (config/env.py); what is
computed from the values read (database and broker options, the beat schedule, cross-variable
limits) comes from config/settings_parts/."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from config.env import env_bool, env_db, env_int, env_int_list, env_list, env_ms, env_str, env_url, read_dotenv, require
from config.logs.setup import build_logging
from config.settings_parts import web
from config.settings_parts.alerts import alert_webhook_check
from config.settings_parts.beat import beat_schedule
from config.settings_parts.broker import broker_transport_options, visibility_timeout_check
from config.settings_parts.database import database_config
from config.settings_parts.gateway import gateway_concurrency_check, gateway_webhook_secret_check
from config.settings_parts.logs import cloudwatch_retention_check

BASE_DIR = Path(__file__).resolve().parent.parent
# Tests and tools that must see only their own environment turn the .env file off.
if env_bool("DJANGO_READ_DOTENV", True):
    read_dotenv(BASE_DIR)

# --- Core -----------------------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
_DEV_SECRET = "dev-insecure-secret-key-never-use-in-production-0123456789abcdef"
# Production has no default secret: a missing one stops start-up.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", _DEV_SECRET) if DEBUG else env_str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG:
    require(len(SECRET_KEY) >= 50 and len(set(SECRET_KEY)) >= 5 and SECRET_KEY != _DEV_SECRET,
            "DJANGO_SECRET_KEY must be a random value of at least 50 characters in production")
    require(bool(ALLOWED_HOSTS), "DJANGO_ALLOWED_HOSTS must name the service's hosts in production")

# Which process this is (web, worker, beat, release); it names log streams, fleet
# statistics and the PostgreSQL application_name.
PROCESS_ROLE = env_str("PROCESS_ROLE", "web")
HOSTNAME = socket.gethostname()

INSTALLED_APPS = web.INSTALLED_APPS
MIDDLEWARE = web.MIDDLEWARE  # in the order a request passes it
AUTHENTICATION_BACKENDS = web.AUTHENTICATION_BACKENDS
# Console logins: after AXES_FAILURE_LIMIT failures for one username from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours, as axes takes it
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# A second factor (TOTP, django-otp) for staff; production can require it.
STAFF_OTP_REQUIRED = env_bool("STAFF_OTP_REQUIRED", False)
OTP_TOTP_ISSUER = "Payment Ops"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = web.templates_config(base_dir=BASE_DIR)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = web.storages_config(debug=DEBUG)
# In development the files are served straight from the apps, without collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Database: psycopg 3 with Django's native pool ----------------------------------
DB_MAX_CONNECTIONS = env_int("DB_MAX_CONNECTIONS", 20, minimum=1)
DB_MIN_CONNECTIONS = env_int("DB_MIN_CONNECTIONS", 5, minimum=0)
DB_CONNECTION_TIMEOUT = env_ms("DB_CONNECTION_TIMEOUT", 30000)  # s, wait for a free connection
DB_IDLE_TIMEOUT = env_ms("DB_IDLE_TIMEOUT", 300000)  # s, idle connections above min are closed
DB_MAX_RETRIES = env_int("DB_MAX_RETRIES", 3)  # tries of the first connection at start-up
DB_RETRY_DELAY = env_ms("DB_RETRY_DELAY", 1000, minimum_ms=0)  # s, between those tries
# s a pooled connection may stay lent out before it is reported as a leak: a little above the
# longest legitimate hold (gunicorn cuts a request at 40 s; tasks hold theirs for seconds).
DB_LEAK_THRESHOLD = env_ms("DB_LEAK_THRESHOLD", 60000)
DB_PGBOUNCER = env_bool("DB_PGBOUNCER", False)  # PgBouncer in transaction mode in front of PostgreSQL
# Per process, beside the pool: connections that only record gateway answers (config/postgres/answers_pool.py).
DB_ANSWER_CONNECTIONS = max(1, DB_MAX_CONNECTIONS // 10)
require(DB_MIN_CONNECTIONS <= DB_MAX_CONNECTIONS,
        f"DB_MIN_CONNECTIONS ({DB_MIN_CONNECTIONS}) must not exceed DB_MAX_CONNECTIONS ({DB_MAX_CONNECTIONS})")
_db_url = env_db("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/payops")
DATABASES = {"default": database_config(
    url_config=_db_url, test_name=env_str("DATABASE_TEST_NAME", "test_" + _db_url["NAME"]),
    role=PROCESS_ROLE, min_connections=DB_MIN_CONNECTIONS, max_connections=DB_MAX_CONNECTIONS,
    connection_timeout=DB_CONNECTION_TIMEOUT, idle_timeout=DB_IDLE_TIMEOUT, pgbouncer=DB_PGBOUNCER,
)}
DB_STARTUP_RETRIES = DB_MAX_RETRIES
DB_STARTUP_RETRY_DELAY = DB_RETRY_DELAY

# --- Redis and Celery -----------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix"))
HEALTH_CHECK_INTERVAL = env_int("HEALTH_CHECK_INTERVAL", 30, minimum=1)  # s

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 3600  # s
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent: a worker killed mid-task is redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)  # s
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150, minimum=1)  # s
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# s a task taken by a worker stays invisible to the others: when a whole worker dies (kill -9,
# a lost host) its unacknowledged tasks go back to the queue only after this. It must outlast
# the longest task and the longest countdown a worker holds (checked below with the settlement
# delays), or a task still running or waiting would be delivered a second time.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)  # s
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(visibility_timeout=CELERY_VISIBILITY_TIMEOUT)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CONSUMER = "config.celery_consumer:Consumer"  # reconnects every 0.5-2 s, not 2-30 s
# A worker keeps trying for as long as the broker is away (Celery's default gives up after 100
# tries, about 3 minutes at those intervals, and the worker exits).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_DEFAULT_QUEUE = "payops"
# Beat stamps each message with its tick, so that no tick runs twice (config/ticks.py).
CELERY_BEAT_SCHEDULER = "config.ticks:TickScheduler"
PAYMENT_SETTLE_SWEEP_INTERVAL = env_int("PAYMENT_SETTLE_SWEEP_INTERVAL", 60, minimum=1)  # s
CELERY_BEAT_SCHEDULE = beat_schedule(health_check_interval=HEALTH_CHECK_INTERVAL,
                                     settle_sweep_interval=PAYMENT_SETTLE_SWEEP_INTERVAL)
require(CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT,
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT")

# --- Payment gateway ------------------------------------------------------------------
PAYMENT_GATEWAY_URL = env_url("PAYMENT_GATEWAY_URL", "http://127.0.0.1:8421", schemes=("http", "https"))
PAYMENT_GATEWAY_API_KEY = (
    env_str("PAYMENT_GATEWAY_API_KEY", "sk_test_sandbox") if DEBUG else env_str("PAYMENT_GATEWAY_API_KEY")
)
# The gateway's webhook signing secret (whsec_…); no default: unset, POST /webhooks/gateway answers 503.
PAYMENT_GATEWAY_WEBHOOK_SECRET = env_str("PAYMENT_GATEWAY_WEBHOOK_SECRET", "")
gateway_webhook_secret_check(secret=PAYMENT_GATEWAY_WEBHOOK_SECRET)
PAYMENT_TIMEOUT = env_ms("PAYMENT_TIMEOUT", 10000)  # s, read timeout of one gateway call
PAYMENT_CONNECT_TIMEOUT = env_ms("PAYMENT_CONNECT_TIMEOUT", 3000)  # s
PAYMENT_RETRY_ATTEMPTS = env_int("PAYMENT_RETRY_ATTEMPTS", 3, minimum=1)  # tries in all
PAYMENT_RETRY_DELAY = env_ms("PAYMENT_RETRY_DELAY", 1000, minimum_ms=0)  # s, first backoff
PAYMENT_POOL_MAXSIZE = env_int("PAYMENT_POOL_MAXSIZE", 10, minimum=1)
# s, whole payment (all tries and backoff) must finish inside this; gunicorn's timeout is above it
PAYMENT_DEADLINE = env_ms("PAYMENT_DEADLINE", 25000)
require(PAYMENT_DEADLINE >= PAYMENT_TIMEOUT, "PAYMENT_DEADLINE must be at least PAYMENT_TIMEOUT")
# gunicorn threads per web worker for the API (config/gunicorn.py reads it; validated here):
# more than the gateway concurrency limit, or calls over it queue instead of being refused.
GUNICORN_THREADS = env_int("GUNICORN_THREADS", 2 * PAYMENT_POOL_MAXSIZE, minimum=1)  # threads per worker
# Threads of each gunicorn worker kept for probes (/health/live, /health/ready) and for the
# console, /health/status and /metrics, beside GUNICORN_THREADS for the API (config/lanes.py).
WEB_PROBE_THREADS = env_int("WEB_PROBE_THREADS", 2, minimum=1, maximum=16)  # threads per worker
WEB_OPS_THREADS = env_int("WEB_OPS_THREADS", 2, minimum=1, maximum=32)  # threads per worker
# s a payment or refund POST may wait in gunicorn's queue for a thread; longer: 503 queue_timeout
# at once, nothing started. The deadline above counts from arrival, queue included.
PAYMENT_QUEUE_TIMEOUT = env_ms("PAYMENT_QUEUE_TIMEOUT", 2000)
require(PAYMENT_QUEUE_TIMEOUT < PAYMENT_DEADLINE, "PAYMENT_QUEUE_TIMEOUT must be below PAYMENT_DEADLINE")

# Per API key, shared by the fleet through Redis (token bucket).
API_RATE_LIMIT = env_int("API_RATE_LIMIT", 50, minimum=1)  # requests per second, sustained
API_RATE_BURST = env_int("API_RATE_BURST", 100, minimum=1)  # requests at once

# Circuit breaker shared by the fleet through Redis.
BREAKER_FAILURE_RATE = env_int("BREAKER_FAILURE_RATE", 50, minimum=1, maximum=100)  # % of calls in the window
BREAKER_MINIMUM_CALLS = env_int("BREAKER_MINIMUM_CALLS", 10, minimum=1)  # calls before the rate counts
BREAKER_WINDOW = env_int("BREAKER_WINDOW", 30, minimum=1)  # s, sliding window
BREAKER_OPEN_SECONDS = env_ms("BREAKER_OPEN_MS", 30000)  # s of failing fast before one probe
require(
    "BREAKER_SLOW_CALL_MS" not in os.environ,
    "BREAKER_SLOW_CALL_MS is gone: a slow success no longer counts as a breaker failure (only a call "
    "slower than PAYMENT_TIMEOUT does); set PAYMENT_SLOW_CALL_MS, which lowers the gateway concurrency limit",
)
# Gateway calls in flight per process: calls over the limit are answered 503 gateway_saturated
# at once, nothing sent. The limit falls toward the minimum while successes are slower than
# PAYMENT_SLOW_CALL_MS (or calls time out) and climbs back to the maximum while they are not.
PAYMENT_SLOW_CALL = env_ms("PAYMENT_SLOW_CALL_MS", 8000)  # s; a slower success lowers the limit, warns ops
PAYMENT_CONCURRENCY_MAX = env_int("PAYMENT_CONCURRENCY_MAX", PAYMENT_POOL_MAXSIZE, minimum=1)  # calls
PAYMENT_CONCURRENCY_MIN = env_int("PAYMENT_CONCURRENCY_MIN", min(2, PAYMENT_CONCURRENCY_MAX), minimum=1)  # calls
gateway_concurrency_check(
    pool_maxsize=PAYMENT_POOL_MAXSIZE, concurrency_min=PAYMENT_CONCURRENCY_MIN,
    concurrency_max=PAYMENT_CONCURRENCY_MAX, gunicorn_threads=GUNICORN_THREADS,
)
# Settlement of unknown outcomes: delays between re-asks, then every last one.
# (the last step stays below CELERY_VISIBILITY_TIMEOUT's default, see the check below)
PAYMENT_SETTLE_DELAYS = env_int_list("PAYMENT_SETTLE_DELAYS", [60, 300, 1800], minimum=1)  # s
# s a payment claimed by one send stays its own; after that a redelivered settlement takes it over
PAYMENT_CLAIM_STALE_AFTER = PAYMENT_DEADLINE + 10
visibility_timeout_check(
    visibility_timeout=CELERY_VISIBILITY_TIMEOUT, task_time_limit=CELERY_TASK_TIME_LIMIT,
    settle_delays=PAYMENT_SETTLE_DELAYS, claim_stale_after=PAYMENT_CLAIM_STALE_AFTER,
)
PAYMENT_PENDING_EXPIRY = env_int("PAYMENT_PENDING_EXPIRY", 900, minimum=1)  # s a never-sent payment waits
# s a payment may wait for its customer's authentication (3-D Secure) before it is canceled
PAYMENT_ACTION_EXPIRY = env_int("PAYMENT_ACTION_EXPIRY", 86400, minimum=60)

# --- General outbound HTTP ------------------------------------------------------------
HTTP_MAX_CONNECTIONS = env_int("HTTP_MAX_CONNECTIONS", 100, minimum=1)
HTTP_MAX_CONNECTIONS_PER_HOST = env_int("HTTP_MAX_CONNECTIONS_PER_HOST", 20, minimum=1)
HTTP_REQUEST_TIMEOUT = env_ms("HTTP_REQUEST_TIMEOUT", 60000)  # s
HTTP_RETRY_ATTEMPTS = env_int("HTTP_RETRY_ATTEMPTS", 3, minimum=1)
require(HTTP_MAX_CONNECTIONS_PER_HOST <= HTTP_MAX_CONNECTIONS,
        "HTTP_MAX_CONNECTIONS_PER_HOST must not exceed HTTP_MAX_CONNECTIONS")

# --- Health and alerts --------------------------------------------------------------
ALERT_WARNING_THRESHOLD = env_int("ALERT_WARNING_THRESHOLD", 80, minimum=1, maximum=100)  # %
ALERT_CRITICAL_THRESHOLD = env_int("ALERT_CRITICAL_THRESHOLD", 90, minimum=1, maximum=100)  # %
require(ALERT_WARNING_THRESHOLD < ALERT_CRITICAL_THRESHOLD,
        "ALERT_WARNING_THRESHOLD must be below ALERT_CRITICAL_THRESHOLD")
HEALTH_RETENTION_DAYS = env_int("HEALTH_RETENTION_DAYS", 7, minimum=1)  # days raw snapshots are kept
HEALTH_CHECK_TIMEOUT = env_ms("HEALTH_CHECK_TIMEOUT", 5000)  # s, budget of each component check
# s between two publications of one process's pool statistics to Redis; 0 turns them off
HEALTH_PUBLISH_INTERVAL = env_int("HEALTH_PUBLISH_INTERVAL", 5, minimum=0)
# Bearer token that unlocks /health/status details and /metrics for monitors; empty: staff sessions only.
HEALTH_STATUS_TOKEN = env_str("HEALTH_STATUS_TOKEN", "")
# Every web and worker process trips the dead-man's switch itself when runs stop (health/watchdog.py);
# false leaves it to whatever polls /health/status.
HEALTH_STALE_WATCH = env_bool("HEALTH_STALE_WATCH", True)
HEALTH_QUEUE_WARNING = env_int("HEALTH_QUEUE_WARNING", 100, minimum=1)  # tasks waiting in the Celery queue
DB_CONNECTION_RESERVE = env_int("DB_CONNECTION_RESERVE", 10)  # server connections no pool may count on
PAYMENT_UNKNOWN_MAX_AGE = env_int("PAYMENT_UNKNOWN_MAX_AGE", 300, minimum=1)  # s a payment may stay unsettled
ALERT_HYSTERESIS_MARGIN = env_int("ALERT_HYSTERESIS_MARGIN", 5, maximum=50)  # % below a threshold to clear
# Gateway latency of payment creations over a health interval (its p95), in % of PAYMENT_TIMEOUT:
# slow calls are seen before they time out.
ALERT_LATENCY_WARNING = env_int("ALERT_LATENCY_WARNING", 50, minimum=1, maximum=100)  # % of PAYMENT_TIMEOUT
ALERT_LATENCY_ERROR = env_int("ALERT_LATENCY_ERROR", 80, minimum=1, maximum=100)  # % of PAYMENT_TIMEOUT
require(ALERT_LATENCY_WARNING < ALERT_LATENCY_ERROR, "ALERT_LATENCY_WARNING must be below ALERT_LATENCY_ERROR")
# Gateway tries an interval needs before its latency and timeout rate are judged (a quiet night never pages).
ALERT_GATEWAY_MIN_CALLS = env_int("ALERT_GATEWAY_MIN_CALLS", 5, minimum=1)
# Timeouts among an interval's gateway tries: a warning above the first, an error above the second.
ALERT_TIMEOUT_RATE_WARNING = env_int("ALERT_TIMEOUT_RATE_WARNING", 2, minimum=1, maximum=100)  # % of tries
ALERT_TIMEOUT_RATE_ERROR = env_int("ALERT_TIMEOUT_RATE_ERROR", 10, minimum=1, maximum=100)  # % of tries
require(ALERT_TIMEOUT_RATE_WARNING < ALERT_TIMEOUT_RATE_ERROR,
        "ALERT_TIMEOUT_RATE_WARNING must be below ALERT_TIMEOUT_RATE_ERROR")
# Payments reaching an outcome in an interval (and in the hour before it) before their success rate
# and decline codes are compared with the previous hour's.
ALERT_PAYMENTS_MIN_VOLUME = env_int("ALERT_PAYMENTS_MIN_VOLUME", 20, minimum=1)
ALERT_SUCCESS_DROP = env_int("ALERT_SUCCESS_DROP", 10, minimum=1, maximum=100)  # percentage points below the hour's
# One decline code at this many times its share of the previous hour's payments, and at least
# ALERT_DECLINE_SPIKE_MIN declines of it in the interval: a warning naming the code.
ALERT_DECLINE_SPIKE_FACTOR = env_int("ALERT_DECLINE_SPIKE_FACTOR", 3, minimum=2)
ALERT_DECLINE_SPIKE_MIN = env_int("ALERT_DECLINE_SPIKE_MIN", 10, minimum=1)  # declines of one code in an interval
ALERT_ESCALATE_AFTER = env_int("ALERT_ESCALATE_AFTER", 3, minimum=1)  # checks an error lasts before critical
ALERT_EMAILS = env_list("ALERT_EMAILS", [])  # addresses told of new critical/error alerts
# Optional; often carries a secret token, so it is never logged or stored.
ALERT_WEBHOOK_URL = env_url("ALERT_WEBHOOK_URL", schemes=("http", "https")) if env_str("ALERT_WEBHOOK_URL", "") else ""
# Key of the HMAC-SHA256 signature on every alert webhook (Payops-Signature); never logged or stored.
ALERT_WEBHOOK_SECRET = env_str("ALERT_WEBHOOK_SECRET", "")
alert_webhook_check(url=ALERT_WEBHOOK_URL, secret=ALERT_WEBHOOK_SECRET, debug=DEBUG)
require(HEALTH_PUBLISH_INTERVAL <= HEALTH_CHECK_INTERVAL,
        "HEALTH_PUBLISH_INTERVAL must not exceed HEALTH_CHECK_INTERVAL (the check would read old figures)")

# --- Logging and CloudWatch -----------------------------------------------------------
CLOUDWATCH_LOG_GROUP = env_str("CLOUDWATCH_LOG_GROUP", "") or None
CLOUDWATCH_TIMEOUT = env_ms("CLOUDWATCH_TIMEOUT", 15000)  # s
AWS_REGION = env_str("AWS_REGION", "us-east-1")
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL", "") or None
CLOUDWATCH_RETENTION_DAYS = env_int("CLOUDWATCH_RETENTION_DAYS", 30)  # days; 0 leaves the group's policy alone
CLOUDWATCH_QUEUE_SIZE = env_int("CLOUDWATCH_QUEUE_SIZE", 10000, minimum=1)  # records held while CloudWatch lags
CLOUDWATCH_SEND_INTERVAL = env_ms("CLOUDWATCH_SEND_INTERVAL", 5000)  # s, longest a record waits for its batch
CLOUDWATCH_FLUSH_TIMEOUT = env_ms("CLOUDWATCH_FLUSH_TIMEOUT", 5000, minimum_ms=0)  # s, shutdown waits at most this
METRICS_NAMESPACE = env_str("METRICS_NAMESPACE", "PaymentOps")  # CloudWatch namespace of EMF metrics
cloudwatch_retention_check(days=CLOUDWATCH_RETENTION_DAYS)
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json")  # json or text
LOGGING = build_logging(level=LOG_LEVEL, fmt=LOG_FORMAT, role=PROCESS_ROLE, cloudwatch_group=CLOUDWATCH_LOG_GROUP)

# --- E-mail (alert notifications) ---------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)  # s; a stuck mail server must not hang a task
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "payment-ops@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Load balancers probe health over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health/"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)  # s
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

os.environ.setdefault("PROCESS_ROLE", PROCESS_ROLE)
