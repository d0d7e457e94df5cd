"""Django settings of the plain view: Django's defaults, as a user would start from them
(no connection pool, a connection per request), pointed at the fleet database."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["DATABASE_URL"])

SECRET_KEY = "bench-only-not-a-secret-" + "x" * 32
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["bench.fleet.baseline"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "bench.fleet.baseline.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
    }
}
if os.environ.get("BENCH_DJANGO_FLOOR"):
    # The Django floor (bench/fleet/baseline/django_floor.py): the product's database stack,
    # psycopg 3 with Django's native pool sized to the threads, autocommit as Django's default.
    ROOT_URLCONF = "bench.fleet.baseline.django_floor"
    _threads = int(os.environ.get("GUNICORN_THREADS", "8"))
    DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 2, "max_size": _threads, "timeout": 30}}

STRIPE_API_BASE = os.environ["PAYMENT_GATEWAY_URL"]
STRIPE_API_KEY = os.environ["PAYMENT_GATEWAY_API_KEY"]
