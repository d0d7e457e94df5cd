"""The service's URLs plus endpoints that only the test suite's servers expose."""


from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

from config.urls import handler404, handler500  # noqa: F401
from config.urls import urlpatterns as service_urls


def hold_db(request: HttpRequest) -> JsonResponse:
    """Holds one pooled connection for `ms` milliseconds, like a slow query would."""
    ms = int(request.GET.get("ms", "100"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [ms / 1000])
    return JsonResponse({"held_ms": ms})


urlpatterns = [*service_urls, path("_test/hold-db", hold_db, name="test_hold_db")]
