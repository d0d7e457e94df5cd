"""The gateway peer: localstripe's aiohttp app, bound to loopback, from scratch.

localstripe's own CLI binds '::' (every interface, v4 and v6) and reloads
/tmp/localstripe.pickle. We want neither: a dev/test gateway must not be reachable from
the network, and every run must start empty so tests are independent.

localstripe also pickles its *whole* store to /tmp/localstripe.pickle on every write
(`Store.__setitem__`, `Store.__delitem__` and a middleware after each POST/DELETE). That
file is shared by every localstripe on the machine (other engineers, parallel test runs)
and the cost grows with the store (O(n) per write, so O(n^2) for a benchmark). We turn
persistence off; a sandbox gateway lives exactly as long as its process.
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web

from sandbox.procutil import wait_for_stop, write_ready_file


def _disable_persistence() -> None:
    """Make localstripe's store purely in-memory (see module docstring)."""
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


def _fail_authentication_like_stripe() -> None:
    """Stripe sends `payment_intent.payment_failed` when a customer fails 3-D Secure;
    localstripe's `_authenticate` with success=false only marks the intent (requires_payment_method,
    `last_payment_error` payment_intent_authentication_failure) and sends nothing. The route
    keeps the function it was given at import, so the entry in `extra_apis` is replaced too,
    before the server module builds its routes."""
    from localstripe import resources
    from localstripe.webhooks import schedule_webhook

    original = resources.PaymentIntent._api_authenticate
    if getattr(original, "sandbox_wrapped", False):
        return

    def authenticate(id, client_secret=None, success=False, **kwargs):
        intent = original(id, client_secret=client_secret, success=success, **kwargs)
        if intent._authentication_failed:
            schedule_webhook(resources.Event("payment_intent.payment_failed", intent))
        return intent

    authenticate.sandbox_wrapped = True  # type: ignore[attr-defined]  # a marker on the function: wrap only once
    resources.PaymentIntent._api_authenticate = staticmethod(authenticate)
    resources.extra_apis[:] = [(method, url, authenticate if url.endswith("/_authenticate") else func)
                               for method, url, func in resources.extra_apis]


def _deliver_events(url: str, secret: str) -> None:
    """Signed deliveries of every event to `url`, as a Stripe webhook endpoint gets them
    (localstripe's own `POST /_config/webhooks/{id}`, registered before the first request)."""
    from localstripe.webhooks import register_webhook

    if not secret:
        raise SystemExit("--webhook-url needs PAYMENT_GATEWAY_WEBHOOK_SECRET in the environment (the signing secret)")
    register_webhook("sandbox", url, secret, None)
    print(f"sandbox gateway delivers its events to {url}", flush=True)


def build_app() -> web.Application:
    _disable_persistence()
    _fail_authentication_like_stripe()
    from localstripe import server  # import after patching: nothing is loaded at import

    server.store.clear()
    app: web.Application = server.app
    return app


def bind_loopback(host: str, port: int) -> socket.socket:
    """Bind ourselves so port 0 works and the caller can learn the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    host: str = "127.0.0.1",
    port: int = 8420,
    *,
    access_log: bool = False,
    ready_file: str | None = None,
    parent_pid: int | None = None,
    webhook_url: str | None = None,
    webhook_secret: str = "",
) -> None:
    app = build_app()
    if webhook_url:
        _deliver_events(webhook_url, webhook_secret)
    sock = bind_loopback(host, port)
    actual_port = sock.getsockname()[1]
    logger = None
    if access_log:
        logger = logging.getLogger("aiohttp.access")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
    runner = web.AppRunner(app, access_log=logger, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()

    url = f"http://{host}:{actual_port}" if ":" not in host else f"http://[{host}]:{actual_port}"
    print(f"sandbox gateway (localstripe) listening on {url}", flush=True)
    if ready_file:
        write_ready_file(ready_file, url)

    try:
        await wait_for_stop(parent_pid)
    finally:
        await runner.cleanup()
