from django.urls import path

from payments.webhooks.views import gateway_webhook

urlpatterns = [path("gateway", gateway_webhook, name="gateway-webhook")]
