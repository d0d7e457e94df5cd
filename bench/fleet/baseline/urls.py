from django.urls import path

from bench.fleet.baseline.views import create_payment

urlpatterns = [path("api/v1/payments", create_payment)]
