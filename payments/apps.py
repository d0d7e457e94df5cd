from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    def ready(self) -> None:
        # Every process that can change an API key (web, console, shell, workers) announces
        # the change to the processes that cache keys.
        from payments.api import keycache  # noqa: F401 - connects its signal receivers

        # Gateway events: their tasks for every worker, their pages for the console.
        from payments.webhooks import admin, tasks  # noqa: F401 - registration
