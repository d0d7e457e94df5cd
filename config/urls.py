from django.conf import settings
from django.contrib import admin
from django.urls import include, path

if settings.STAFF_OTP_REQUIRED:
    from django_otp.admin import OTPAdminSite

    # Every console login then asks for a TOTP code from a confirmed device.
    admin.site.__class__ = OTPAdminSite

urlpatterns = [
    path("api/v1/", include("payments.api.urls")),
    path("webhooks/", include("payments.webhooks.urls")),
    path("health/", include("health.urls")),
    path("", include("health.metrics_urls")),
    path("admin/", admin.site.urls),
]

handler500 = "config.views.server_error"
handler404 = "config.views.not_found"
