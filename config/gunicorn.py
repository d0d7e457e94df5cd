"""gunicorn settings for the web process (Procfile `web`)."""

import os

# A platform (Procfile) hands the port in PORT and routes to every interface; GUNICORN_HOST
# narrows that (loopback on a shared machine), GUNICORN_BIND replaces it whole.
bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('GUNICORN_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
# gthread, stamping each request with its wait for a thread so the database pool's timeout
# counts from when the request arrived (config/queueing.py).
worker_class = "config.gunicorn_worker.ThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Each thread may hold one database connection: keep threads below DB_MAX_CONNECTIONS.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Above the payment deadline (PAYMENT_DEADLINE, 25 s by default), so a worker is never
# killed by its own server in the middle of a payment.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "40"))
graceful_timeout = 30
keepalive = 5
accesslog = None  # requests are logged by the application, as JSON
max_requests = 0


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    os.environ["PROCESS_ROLE"] = os.environ.get("PROCESS_ROLE", "web")


def worker_exit(server, worker):  # noqa: ARG001
    # Flush buffered log handlers (CloudWatch) with a bound, so shutdown never hangs.
    import logging

    logging.shutdown()
