"""HTTP clients and their connection pools: the payment gateway's adapter instrumentation and the
general outbound client (alert webhooks, other APIs)."""
