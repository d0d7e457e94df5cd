from django.urls import path

from payments.api import openapi, views

app_name = "api"

urlpatterns = [
    path("payments", views.payments_collection, name="payments"),
    path("payments/<str:payment_id>", views.payment_detail, name="payment-detail"),
    path("payments/<str:payment_id>/refunds", views.payment_refunds, name="payment-refunds"),
    path("refunds/<str:refund_id>", views.refund_detail, name="refund-detail"),
    path("openapi.json", openapi.openapi_document, name="openapi"),
]
