"""Request latency with CloudWatch healthy, unreachable and hanging.

    .venv/bin/python bench/cloudwatch_latency.py [--requests 200] [--work-ms 3] [--rounds 3]

Starts moto's server on a free loopback port (healthy), picks a closed port (unreachable:
connections refused) and opens a socket that accepts and never answers (hanging: every
call waits for CLOUDWATCH_TIMEOUT). For each, a loop of request-like iterations does its
`--work-ms` of work and logs one record through stdout (to /dev/null here) and the real
CloudWatch handler; the three run interleaved, request by request. Prints median and p95
latency per request, the cost of one logging call, the time `close()` took, and the
handler's counters.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import django  # noqa: E402

django.setup()

from django.test import override_settings  # noqa: E402

from config.logs.cloudwatch import make_handler  # noqa: E402
from config.logs.events import log_event  # noqa: E402
from config.logs.formatter import JsonFormatter  # noqa: E402
from config.logs.redaction import RedactionFilter  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def black_hole() -> tuple[socket.socket, str]:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def build_logger(endpoint: str, name: str, queue_size: int) -> tuple[logging.Logger, logging.Handler]:
    with override_settings(CLOUDWATCH_LOG_GROUP=f"/payops/bench/{name}", AWS_ENDPOINT_URL=endpoint,
                           CLOUDWATCH_TIMEOUT=2.0, CLOUDWATCH_SEND_INTERVAL=0.1, CLOUDWATCH_FLUSH_TIMEOUT=1.0,
                           CLOUDWATCH_QUEUE_SIZE=queue_size):
        cloudwatch = make_handler()
    stdout = logging.StreamHandler(open(os.devnull, "w"))
    redaction = RedactionFilter()
    for handler in (stdout, cloudwatch):
        handler.setFormatter(JsonFormatter())
        handler.addFilter(redaction)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers = [stdout, cloudwatch]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, cloudwatch


def request(logger: logging.Logger, i: int, work_s: float) -> tuple[float, float]:
    """One request-like iteration; returns its latency and the cost of its logging call."""
    started = time.perf_counter()
    time.sleep(work_s)
    before_log = time.perf_counter()
    log_event(logger, "payment_timeout", "gateway call timed out", level=logging.WARNING,
              payment_id=f"pay_{i:024d}", attempt=1, idempotency_key=f"pay_{i}-create", duration_ms=3)
    ended = time.perf_counter()
    return ended - started, ended - before_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--work-ms", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue-size", type=int, default=10000)
    args = parser.parse_args()
    work_s = args.work_ms / 1000

    moto, healthy = start_moto()
    hole, hanging = black_hole()
    try:
        endpoints = {"healthy": healthy, "unreachable": f"http://127.0.0.1:{free_port()}", "hanging": hanging}
        built = {name: build_logger(endpoint, name, args.queue_size) for name, endpoint in endpoints.items()}
        for logger, _ in built.values():
            for i in range(20):  # warm-up: imports, the sender thread, a first connection
                request(logger, i, work_s)
        latencies: dict[str, list[float]] = {name: [] for name in built}
        costs: dict[str, list[float]] = {name: [] for name in built}
        # Interleaved request by request: whatever else loads the machine weighs on all alike.
        for _ in range(args.rounds):
            for i in range(args.requests):
                for name, (logger, _) in built.items():
                    latency, cost = request(logger, i, work_s)
                    latencies[name].append(latency)
                    costs[name].append(cost)
        print(f"{args.requests} requests x {args.rounds} rounds per scenario, interleaved, "
              f"{args.work_ms} ms of work each, queue {args.queue_size}")
        print(f"{'CloudWatch':<12}{'median ms':>10}{'p95 ms':>9}{'log call µs':>13}{'close s':>9}   handler stats")
        for name, (_, handler) in built.items():
            stats = handler.stats()  # type: ignore[attr-defined]
            started = time.perf_counter()
            handler.close()
            closed = time.perf_counter() - started
            p95 = statistics.quantiles(latencies[name], n=20)[-1]
            print(f"{name:<12}{statistics.median(latencies[name]) * 1000:>10.3f}{p95 * 1000:>9.3f}"
                  f"{statistics.median(costs[name]) * 1e6:>13.1f}{closed:>9.2f}   sent={stats['sent']} "
                  f"queued={stats['queued']} dropped={stats['dropped']} errors={stats['errors']} "
                  f"state={stats['state']}")
    finally:
        hole.close()
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
