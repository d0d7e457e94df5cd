"""gunicorn settings for the web process (Procfile `web`)."""

import os

# A platform (Procfile) hands the port in PORT and routes to every interface; GUNICORN_HOST
# narrows that (loopback on a shared machine), GUNICORN_BIND replaces it whole.
bind = os.environ.get("GUNICORN_BIND") or f"{os.environ.get('GUNICORN_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
# gthread, stamping each request with its wait for a thread so the database pool's timeout
# counts from when the request arrived (config/queueing.py).
worker_class = "config.gunicorn_worker.ThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# The API lane's threads (probes and the console have their own: config/lanes.py). A payment
# holds its thread for the whole gateway call but a database connection only around it, so
# threads are sized for the gateway, not for DB_MAX_CONNECTIONS: twice the per-process gateway
# pool, so that calls over the concurrency limit still find a thread to be refused on at once
# (and GETs one to be served on). docs/scaling.md: sizing against latency and rate limit.
threads = int(os.environ.get("GUNICORN_THREADS") or 2 * int(os.environ.get("PAYMENT_POOL_MAXSIZE") or "10"))
# Above the payment deadline (PAYMENT_DEADLINE, 25 s by default), so a worker is never
# killed by its own server in the middle of a payment.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "40"))
graceful_timeout = 30
keepalive = 5
accesslog = None  # requests are logged by the application, as JSON
max_requests = 0


def post_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    os.environ["PROCESS_ROLE"] = os.environ.get("PROCESS_ROLE", "web")


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn calls hooks with this signature
    # Flush buffered log handlers (CloudWatch) with a bound, so shutdown never hangs.
    import logging

    logging.shutdown()
