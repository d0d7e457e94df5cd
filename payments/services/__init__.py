"""Writes of the payments app, one module a noun: API keys, idempotency, submitting a payment,
recording a gateway result, settlement and refunds."""
