"""The plain view's WSGI application: gunicorn bench.fleet.baseline.wsgi:application
(the floor is bench.fleet.baseline.floor:application, with no Django at all)."""

from __future__ import annotations

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "bench.fleet.baseline.settings"

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
