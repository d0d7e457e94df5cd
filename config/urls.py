from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("payments.api.urls")),
    path("health/", include("health.urls")),
    path("admin/", admin.site.urls),
]

handler500 = "config.views.server_error"
handler404 = "config.views.not_found"
