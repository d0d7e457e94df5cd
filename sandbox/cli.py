"""`python -m sandbox ...`: run the gateway and the proxy, and flip faults by hand."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sandbox.faults import KINDS

DEFAULT_PROXY_URL = os.environ.get("SANDBOX_PROXY_URL", "http://127.0.0.1:8421")


def loopback_host(host: str) -> str:
    """The sandbox must never be reachable from the network: refuse any other address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host.strip("[]")
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address (127.0.0.0/8 or ::1)")


def listen_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return loopback_host(host), int(port)


def loopback_url(value: str) -> str:
    """An http URL on this machine: the sandbox sends nothing anywhere else."""
    parts = urlsplit(value)
    if parts.scheme != "http" or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// URL")
    loopback_host(parts.hostname)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Gateway peer for dev and tests: localstripe, a fault-injecting proxy, and its controls.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gw = sub.add_parser("gateway", help="run localstripe on loopback, from scratch")
    gw.add_argument("--host", type=loopback_host, default="127.0.0.1")
    gw.add_argument("--port", type=int, default=8420, help="0: let the OS choose")
    gw.add_argument("--access-log", action="store_true", help="log every request")
    gw.add_argument("--webhook-url", type=loopback_url, default=None,
                    help="deliver every event, signed with $PAYMENT_GATEWAY_WEBHOOK_SECRET, to this loopback URL")
    _add_process_options(gw)

    px = sub.add_parser("proxy", help="run the idempotency + fault-injection proxy")
    px.add_argument("--listen", type=listen_address, default=("127.0.0.1", 8421), metavar="HOST:PORT")
    px.add_argument("--upstream", default="http://127.0.0.1:8420")
    px.add_argument("--fast", action="store_true", help="start in fast mode")
    _add_process_options(px)

    up = sub.add_parser("up", help="run gateway and proxy together until Ctrl-C")
    up.add_argument("--gateway-port", type=int, default=8420)
    up.add_argument("--proxy-port", type=int, default=8421)

    fault = sub.add_parser("fault", help="add a fault rule")
    fault.add_argument("kind", choices=sorted(KINDS))
    fault.add_argument("--count", type=int, help="fire this many times (default: until cleared)")
    fault.add_argument("--probability", type=float, help="chance of firing per matching request (default 1.0)")
    fault.add_argument("--method", help="only this HTTP method")
    fault.add_argument("--path-prefix", help="only paths starting with this, e.g. /v1/payment_intents")
    fault.add_argument("--delay-ms", type=int, help="latency kinds (default 2000)")
    fault.add_argument("--retry-after", type=int, help="rate_limit/http_503 Retry-After seconds (default 1)")
    fault.add_argument("--duration-ms", type=int, help="refuse: how long the port stays closed (default 1000)")
    _add_proxy_option(fault)

    for name, text in (
        ("clear", "remove every fault rule"),
        ("faults", "list fault rules"),
        ("stats", "show counters"),
    ):
        p = sub.add_parser(name, help=text)
        _add_proxy_option(p)
        if name == "stats":
            p.add_argument("--watch", type=float, metavar="SECONDS", help="repeat every SECONDS until Ctrl-C")

    mode = sub.add_parser("mode", help="switch fast mode on or off")
    mode.add_argument("mode", choices=("fast", "normal"))
    _add_proxy_option(mode)

    reset = sub.add_parser("reset", help="zero stats, drop rules, idempotency keys and fast intents")
    reset.add_argument("--upstream", action="store_true", help="also empty localstripe")
    _add_proxy_option(reset)
    return parser


def _add_process_options(p: argparse.ArgumentParser) -> None:
    # Used by the harness: where to publish our URL, and whom to die with.
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)


def _add_proxy_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proxy", default=DEFAULT_PROXY_URL, help=f"proxy URL (default {DEFAULT_PROXY_URL}; env SANDBOX_PROXY_URL)")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "gateway":
        from sandbox.gateway import serve as serve_gateway

        asyncio.run(
            serve_gateway(
                args.host, args.port, access_log=args.access_log, ready_file=args.ready_file, parent_pid=args.parent_pid,
                webhook_url=args.webhook_url, webhook_secret=os.environ.get("PAYMENT_GATEWAY_WEBHOOK_SECRET", ""),
            )
        )
        return 0
    if args.command == "proxy":
        from sandbox.proxy import serve as serve_proxy

        host, port = args.listen
        asyncio.run(
            serve_proxy(host, port, args.upstream, fast=args.fast, ready_file=args.ready_file, parent_pid=args.parent_pid)
        )
        return 0
    if args.command == "up":
        import signal

        from sandbox.harness import SandboxStack

        # SIGTERM (e.g. from a process manager) must also stop the children cleanly.
        signal.signal(signal.SIGTERM, _interrupt)

        with SandboxStack(gateway_port=args.gateway_port, proxy_port=args.proxy_port, log_to_console=True) as stack:
            print(f"gateway {stack.gateway_url}\nproxy   {stack.proxy_url}\nCtrl-C to stop", flush=True)
            try:
                while stack.running():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        return 0

    from sandbox.client import ControlClient, ControlError

    client = ControlClient(args.proxy)
    try:
        if args.command == "fault":
            rule = {
                name: value
                for name, value in (
                    ("count", args.count),
                    ("probability", args.probability),
                    ("method", args.method),
                    ("path_prefix", args.path_prefix),
                    ("delay_ms", args.delay_ms),
                    ("retry_after", args.retry_after),
                    ("duration_ms", args.duration_ms),
                )
                if value is not None
            }
            _print(client.fault(args.kind, **rule))
        elif args.command == "clear":
            _print(client.clear())
        elif args.command == "faults":
            _print(client.faults())
        elif args.command == "stats":
            while True:
                _print(client.stats())
                if not args.watch:
                    break
                time.sleep(args.watch)
        elif args.command == "mode":
            _print(client.set_fast(args.mode == "fast"))
        elif args.command == "reset":
            _print(client.reset(upstream=args.upstream))
    except ControlError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach the proxy at {args.proxy}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
