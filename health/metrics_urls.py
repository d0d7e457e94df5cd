"""/metrics at the site's root, where Prometheus looks by default."""

from django.urls import path

from health import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
