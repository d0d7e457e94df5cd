#!/usr/bin/env python
"""Payments gateway client benchmark: our GatewayClient against the obvious alternatives.

Against the sandbox proxy in fast mode (it answers PaymentIntent creates itself, so the
gateway's own speed is out of the picture), loopback only, in ONE run:

* ``ours``     GatewayClient with its Redis-shared circuit breaker (default config: a closed
               state heard from Redis is trusted for ``sync_interval`` and outcomes are sent
               in batches, one EVALSHA per interval per process; its price is counted);
* ``session``  one plain pooled ``requests.Session`` (HTTPAdapter sized like ours);
* ``naive``    ``requests.post`` per call (a new connection each time);
* ``sdk``      the ``stripe`` Python SDK (StripeClient, telemetry off, same retry budget);
* ``ours-localbreaker``, ``ours-nobreaker``  diagnostics: the same GatewayClient with an
               in-process breaker only (no Redis), and with no breaker at all, to split the
               resilience layer's cost into "Redis round-trips", "breaker logic" and "the
               rest of the wrapper".

Each client sends the same sequence of PaymentIntent creates (amount, usd, pm_card_visa,
confirm=true, metadata[payment_id], unique Idempotency-Key) from ``--threads`` threads, in
``--rounds`` interleaved rounds (the order rotates each round); a fresh client per round,
the proxy's counters reset before each, so "connections opened" is what that client opened.
Figures are medians over rounds; ratios are taken within each round, then the median.
Then the open-breaker fast path: the breaker forced open, ``--open-calls`` calls timed, and
the proxy's counters must show that none of them reached it.

Prints a table and writes it to docs/benchmarks.md under "## Payments gateway client"
(only that section is replaced). ``--profile`` adds a cProfile of our client's hot path.

    .venv/bin/python bench/payments_bench.py [--payments 2000] [--threads 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import logging
import math
import os
import platform
import pstats
import re
import shlex
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import redis  # noqa: E402
import redis.utils  # noqa: E402
import requests  # noqa: E402
import stripe  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

from bench.docs import cpu_model, replace_section  # noqa: E402
from payments.gateway.breaker.policy import BreakerConfig, breaker_keys, breaker_redis_factory  # noqa: E402
from payments.gateway.breaker.shared import CircuitBreaker  # noqa: E402
from payments.gateway.client import GatewayClient, GatewayConfig  # noqa: E402
from sandbox.harness import SandboxStack  # noqa: E402

SECTION = "## Payments gateway client"
API_KEY = "sk_test_bench"
STRIPE_VERSION = "2024-06-20"  # what our client sends
POOL_MAXSIZE = 10  # PAYMENT_POOL_MAXSIZE's default: ours and the plain Session alike
CONNECT_TIMEOUT, READ_TIMEOUT = 3.0, 10.0
RETRY_ATTEMPTS = 3  # tries in all (PAYMENT_RETRY_ATTEMPTS); the SDK gets the same budget

TARGETS = {
    "vs_sdk": 1.2,  # ours / sdk throughput, at least
    "vs_naive": 1.6,  # ours / naive throughput, at least
    "layer_cost": 0.10,  # 1 - ours / session throughput, under
    "conn_share": 0.01,  # ours / naive connections opened, at most
    "open_p99_ms": 5.0,  # open-breaker answer, p99 under
}


# --- the workload --------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    amount: int
    payment_id: str
    key: str


def workload(n: int, tag: str) -> list[Payment]:
    """The same amounts for every client; ids and keys unique per client and round."""
    return [Payment(100 + (i * 7919) % 99_900, f"pay_{tag}_{i}", f"bench-{tag}-{i}") for i in range(n)]


def form(p: Payment) -> dict[str, Any]:
    # Exactly what GatewayClient.create_payment_intent puts on the wire.
    return {
        "amount": p.amount,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": "true",
        "payment_method_types[]": "card",
        "metadata[payment_id]": p.payment_id,
    }


# --- the clients: each a factory of (call, close); call returns True on a succeeded intent


Call = Callable[[Payment], bool]


@dataclass
class Built:
    call: Call
    close: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)


def new_breaker(redis_url: str | None) -> CircuitBreaker:
    return CircuitBreaker(
        BreakerConfig(name=f"bench-{uuid.uuid4().hex[:12]}"),
        redis_factory=breaker_redis_factory(redis_url) if redis_url else None,
    )


def build_ours(proxy_url: str, redis_url: str, *, breaker_mode: str = "redis") -> Built:
    # redis: the shared breaker (production); local: its in-process fallback only; none.
    breaker = {
        "redis": lambda: new_breaker(redis_url),
        "local": lambda: new_breaker(None),
        "none": lambda: None,
    }[breaker_mode]()
    client = GatewayClient(
        GatewayConfig(
            base_url=proxy_url,
            api_key=API_KEY,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retry_attempts=RETRY_ATTEMPTS,
            pool_maxsize=POOL_MAXSIZE,
        ),
        breaker=breaker,
    )

    def call(p: Payment) -> bool:
        result = client.create_payment_intent(
            idempotency_key=p.key, amount=p.amount, currency="usd", payment_method="pm_card_visa",
            metadata={"payment_id": p.payment_id},
        )
        return result.ok and result.data.get("status") == "succeeded"

    def close() -> None:
        client.session.close()
        if breaker is not None and breaker_mode == "redis":
            drop_breaker(breaker, redis_url)

    return Built(call, close, {"client": client, "breaker": breaker})


def drop_breaker(breaker: CircuitBreaker, redis_url: str) -> None:
    try:
        redis.Redis.from_url(redis_url).delete(*breaker_keys(breaker.config.name))
    except redis.RedisError:
        pass


def build_session(proxy_url: str, redis_url: str) -> Built:
    session = requests.Session()
    session.trust_env = False  # as ours: same HTTP work, minus the resilience layer
    session.auth = (API_KEY, "")
    session.headers.update({"Stripe-Version": STRIPE_VERSION, "User-Agent": "bench-session/1"})
    session.mount(proxy_url + "/", HTTPAdapter(pool_connections=4, pool_maxsize=POOL_MAXSIZE, pool_block=True))
    url = proxy_url + "/v1/payment_intents"
    timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def call(p: Payment) -> bool:
        r = session.post(url, data=form(p), headers={"Idempotency-Key": p.key}, timeout=timeout)
        return r.status_code == 200 and r.json().get("status") == "succeeded"

    return Built(call, session.close)


def build_naive(proxy_url: str, redis_url: str) -> Built:
    url = proxy_url + "/v1/payment_intents"
    headers_base = {"Stripe-Version": STRIPE_VERSION, "User-Agent": "bench-naive/1"}
    timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def call(p: Payment) -> bool:
        r = requests.post(url, data=form(p), auth=(API_KEY, ""), timeout=timeout,
                          headers={**headers_base, "Idempotency-Key": p.key})
        return r.status_code == 200 and r.json().get("status") == "succeeded"

    return Built(call, lambda: None)


def build_sdk(proxy_url: str, redis_url: str) -> Built:
    # No telemetry: no X-Stripe-Client-Telemetry header and no ~/.config/stripe file.
    stripe.enable_telemetry = False
    client = stripe.StripeClient(
        API_KEY,
        base_addresses={"api": proxy_url},
        stripe_version=STRIPE_VERSION,
        # Same retry budget as ours (3 tries in all); no call fails here, so none happens.
        max_network_retries=RETRY_ATTEMPTS - 1,
        # The SDK's default client is requests-based too (one Session per thread).
        http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)),
    )
    intents = client.v1.payment_intents

    def call(p: Payment) -> bool:
        pi = intents.create(
            params={
                "amount": p.amount,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "payment_method_types": ["card"],
                "metadata": {"payment_id": p.payment_id},
            },
            options={"idempotency_key": p.key},
        )
        return pi.status == "succeeded"

    return Built(call, lambda: None)


CLIENTS: dict[str, tuple[str, Callable[[str, str], Built]]] = {
    "ours": ("GatewayClient + Redis breaker", build_ours),
    "session": ("plain pooled requests.Session", build_session),
    "naive": ("requests.post per call", build_naive),
    "sdk": (f"stripe SDK {stripe.VERSION}", build_sdk),
    "ours-localbreaker": ("diagnostic: ours, in-process breaker, no Redis",
                          lambda u, r: build_ours(u, r, breaker_mode="local")),
    "ours-nobreaker": ("diagnostic: ours, no breaker",
                       lambda u, r: build_ours(u, r, breaker_mode="none")),
}
DIAGNOSTIC = ["ours-localbreaker", "ours-nobreaker"]
PRIMARY = ["ours", "session", "naive", "sdk"]


# --- measuring -----------------------------------------------------------------------


@dataclass
class RunResult:
    client: str
    payments: int
    seconds: float
    latencies: list[float]  # s
    errors: int
    connections: int
    requests: int
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.payments / self.seconds

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def drive(call: Call, payments: list[Payment], threads: int) -> tuple[float, list[float], int, str]:
    """Run the payments from `threads` threads; (wall seconds, latencies, errors, first error)."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    first_error: list[str] = []
    barrier = threading.Barrier(threads + 1)
    clock = time.perf_counter

    def work(t: int) -> None:
        mine = payments[t::threads]
        lat = latencies[t]
        barrier.wait()
        for p in mine:
            started = clock()
            try:
                ok = call(p)
            except Exception as exc:  # noqa: BLE001 - an error is a figure here
                ok = False
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}"[:200])
            lat.append(clock() - started)
            if not ok:
                errors[t] += 1

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = clock()
    for w in workers:
        w.join()
    wall = clock() - started
    return wall, [x for lat in latencies for x in lat], sum(errors), first_error[0] if first_error else ""


def measure(stack: SandboxStack, name: str, payments: list[Payment], threads: int, redis_url: str) -> RunResult:
    built = CLIENTS[name][1](stack.proxy_url, redis_url)
    try:
        stack.reset(upstream=False)  # zero counters, forget keys and fast-mode intents
        wall, lat, errors, first = drive(built.call, payments, threads)
        stats = stack.stats()
    finally:
        built.close()
    return RunResult(name, len(payments), wall, lat, errors, int(stats["connections_opened"]),
                     int(stats["requests"]), first)


@dataclass
class OpenResult:
    calls: int
    latencies: list[float]
    not_open: int
    requests: int
    connections: int


def measure_open(stack: SandboxStack, calls: int, redis_url: str) -> OpenResult:
    built = build_ours(stack.proxy_url, redis_url)
    client: GatewayClient = built.extra["client"]
    breaker: CircuitBreaker = built.extra["breaker"]
    try:
        breaker.force(state="open", reason="bench", until=time.time() + 60, by="bench")
        stack.reset(upstream=False)
        lat, not_open = [], 0
        clock = time.perf_counter
        for p in workload(calls, f"open-{uuid.uuid4().hex[:6]}"):
            started = clock()
            result = client.create_payment_intent(
                idempotency_key=p.key, amount=p.amount, currency="usd", payment_method="pm_card_visa",
                metadata={"payment_id": p.payment_id},
            )
            lat.append(clock() - started)
            not_open += result.outcome != "circuit_open"
        stats = stack.stats()
        breaker.clear_force(by="bench")
    finally:
        built.close()
    return OpenResult(calls, lat, not_open, int(stats["requests"]), int(stats["connections_opened"]))


@dataclass
class BreakerAlone:
    pairs: int
    wall_us: float  # one before_call + record, median
    cpu_us: float  # this process's CPU per pair, mean


def measure_breaker_alone(pairs: int, redis_url: str) -> BreakerAlone:
    """The Redis breaker's own price, with no HTTP around it: one permit + one record."""
    breaker = new_breaker(redis_url)
    try:
        for _ in range(50):
            breaker.record(breaker.before_call(), outcome="success", duration=0.001)
        walls = []
        clock = time.perf_counter
        cpu = time.process_time()
        for _ in range(pairs):
            started = clock()
            breaker.record(breaker.before_call(), outcome="success", duration=0.001)
            walls.append(clock() - started)
        cpu = time.process_time() - cpu
    finally:
        drop_breaker(breaker, redis_url)
    return BreakerAlone(pairs, statistics.median(walls) * 1e6, cpu / pairs * 1e6)


def profile_ours(stack: SandboxStack, n: int, redis_url: str, top: int = 22) -> str:
    """cProfile of our client in one thread (cProfile sees only the thread it runs in)."""
    built = build_ours(stack.proxy_url, redis_url)
    payments = workload(n, f"prof-{uuid.uuid4().hex[:6]}")
    try:
        stack.reset(upstream=False)
        for p in payments[:50]:
            built.call(p)
        prof = cProfile.Profile()
        prof.enable()
        for p in payments[50:]:
            built.call(p)
        prof.disable()
    finally:
        built.close()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- reporting -----------------------------------------------------------------------


def machine() -> str:
    model = cpu_model()
    return (f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"requests {requests.__version__}, stripe {stripe.VERSION}, redis-py {redis.__version__}")


def med(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(args: argparse.Namespace, rounds: list[dict[str, RunResult]], opened: OpenResult,
           alone: BreakerAlone, command: str, elapsed: float, profile_text: str) -> tuple[str, str]:
    names = [n for n in CLIENTS if n in rounds[0]]
    lines = [
        "| client | payments/s | p50 ms | p99 ms | errors | connections / 1,000 payments |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    fig: dict[str, dict[str, float]] = {}
    for n in names:
        runs = [r[n] for r in rounds]
        f = {
            "rate": med([x.rate for x in runs]),
            "rate_min": min(x.rate for x in runs),
            "rate_max": max(x.rate for x in runs),
            "p50": med([x.pct(0.50) for x in runs]),
            "p99": med([x.pct(0.99) for x in runs]),
            "errors": sum(x.errors for x in runs),
            "conn_per_k": med([x.connections * 1000 / x.payments for x in runs]),
            "connections": sum(x.connections for x in runs),
        }
        fig[n] = f
        lines.append(
            f"| {n}: {CLIENTS[n][0]} | {f['rate']:,.0f} ({f['rate_min']:,.0f}–{f['rate_max']:,.0f}) "
            f"| {f['p50']:.2f} | {f['p99']:.2f} | {f['errors']:.0f} | {f['conn_per_k']:.1f} |"
        )
    table = "\n".join(lines)

    def ratio(a: str, b: str) -> float:
        return med([r[a].rate / r[b].rate for r in rounds])

    vs_sdk, vs_naive, vs_session = ratio("ours", "sdk"), ratio("ours", "naive"), ratio("ours", "session")
    layer_cost = 1 - vs_session
    sess_vs_sdk, sess_vs_naive = ratio("session", "sdk"), ratio("session", "naive")
    conn_share = fig["ours"]["connections"] / max(1, fig["naive"]["connections"])
    open_p50 = percentile(opened.latencies, 0.50) * 1000
    open_p99 = percentile(opened.latencies, 0.99) * 1000
    open_clean = opened.requests == 0 and opened.connections == 0 and opened.not_open == 0
    met = {
        "vs_sdk": vs_sdk >= TARGETS["vs_sdk"],
        "vs_naive": vs_naive >= TARGETS["vs_naive"],
        "layer_cost": layer_cost < TARGETS["layer_cost"],
        "conn_share": conn_share <= TARGETS["conn_share"],
        "open_p99_ms": open_p99 < TARGETS["open_p99_ms"] and open_clean,
    }
    ratios = "\n".join([
        "| ratio | measured | target | |",
        "|---|---:|---:|---|",
        f"| ours / SDK throughput | {vs_sdk:.2f}× | ≥ {TARGETS['vs_sdk']}× | {verdict(met['vs_sdk'])} |",
        f"| ours / naive throughput | {vs_naive:.2f}× | ≥ {TARGETS['vs_naive']}× | {verdict(met['vs_naive'])} |",
        f"| resilience layer cost (1 − ours / plain Session) | {layer_cost * 100:.1f} % | < 10 % "
        f"| {verdict(met['layer_cost'])} |",
        f"| connections opened, ours / naive | {conn_share * 100:.2f} % "
        f"({fig['ours']['connections']:.0f} vs {fig['naive']['connections']:.0f}) | ≤ 1 % "
        f"| {verdict(met['conn_share'])} |",
        f"| open breaker, p99 | {open_p99:.3f} ms (p50 {open_p50:.3f} ms) | < 5 ms "
        f"| {verdict(met['open_p99_ms'])} |",
        f"| *reference:* plain Session / SDK, plain Session / naive | {sess_vs_sdk:.2f}×, "
        f"{sess_vs_naive:.2f}× | (≈1.3×, 1.7×) | |",
    ])
    open_line = (
        f"Open breaker: {opened.calls:,} `create_payment_intent` calls with the breaker forced open: "
        f"{opened.calls - opened.not_open:,} answered `circuit_open`, p50 {open_p50:.3f} ms, "
        f"p99 {open_p99:.3f} ms, max {max(opened.latencies) * 1000:.3f} ms; the proxy counted "
        f"{opened.requests} requests and {opened.connections} connections during them"
        f"{' (nothing reached it)' if opened.requests == 0 and opened.connections == 0 else ''}."
    )

    # The reading: where ours stands, and where its cost goes (from the diagnostic rows).
    def us(a: str) -> float:  # wall time per payment at this thread count, median over rounds
        return med([1e6 / r[a].rate for r in rounds])

    def gap(a: str, b: str) -> float:  # difference of the medians, so that the parts add up
        return us(a) - us(b)

    reading = [
        f"Ours runs at {fig['ours']['rate']:,.0f} payments/s against {fig['session']['rate']:,.0f} for "
        f"a plain pooled Session, {fig['sdk']['rate']:,.0f} for the stripe SDK and "
        f"{fig['naive']['rate']:,.0f} for a new connection per call (medians of {len(rounds)} "
        f"interleaved rounds, {args.threads} threads)."
    ]
    missed = [k for k, v in met.items() if not v]
    labels = {"vs_sdk": "≥ 1.2× the SDK", "vs_naive": "≥ 1.6× naive",
              "layer_cost": "resilience layer < 10 %", "conn_share": "≤ 1 % of naive's connections",
              "open_p99_ms": "open breaker p99 < 5 ms"}
    if not missed:
        reading.append("Every target is met.")
    else:
        reading.append(
            "Met: " + ("; ".join(labels[k] for k in met if met[k]) or "none") + ". "
            "**Missed: " + "; ".join(labels[k] for k in missed) + ".**"
        )
    if all(d in fig for d in DIAGNOSTIC):
        parser = ("hiredis" if redis.utils.HIREDIS_AVAILABLE
                  else "redis-py's pure-Python RESP parser, hiredis not being installed")
        interval = BreakerConfig().sync_interval
        reading.append(
            f"Where ours' extra {gap('ours', 'session'):,.0f} µs per payment over the plain Session "
            f"({us('ours'):,.0f} vs {us('session'):,.0f} µs of wall time per payment at {args.threads} "
            f"threads) goes, from the diagnostic rows: the wrapper without any breaker (instrumented "
            f"pool, urllib3 Retry, deadline, attempt records, result building) "
            f"{gap('ours-nobreaker', 'session'):,.0f} µs "
            f"(per-round throughput {(ratio('ours-nobreaker', 'session') - 1) * 100:+.0f} % against the "
            f"Session's); the breaker's logic kept in process "
            f"{gap('ours-localbreaker', 'ours-nobreaker'):,.0f} µs; sharing the breaker's state through "
            f"Redis {gap('ours', 'ours-localbreaker'):,.0f} µs (differences this small are within the "
            f"rounds' noise). On its own, one permit + record pair on a closed circuit costs "
            f"{alone.wall_us:,.2f} µs of wall time (median) and {alone.cpu_us:,.2f} µs of this process's "
            f"CPU: the closed state heard from Redis is trusted for sync_interval "
            f"({interval * 1000:.0f} ms) and outcomes are counted in process, so a process makes one "
            f"EVALSHA per interval (outcomes sent, state refreshed; replies parsed with {parser}), not "
            f"one per call."
        )
        parts = {
            "the breaker's shared state in Redis": gap("ours", "ours-localbreaker"),
            "the breaker's in-process logic": gap("ours-localbreaker", "ours-nobreaker"),
            "the HTTP wrapper itself": gap("ours-nobreaker", "session"),
        }
        biggest = max(parts, key=parts.__getitem__)
        reading.append(
            f"The largest share of the cost here is {biggest}. For comparison, the same client with "
            f"its breaker kept in process (no Redis at all) reaches "
            f"{ratio('ours-localbreaker', 'sdk'):.2f}× the SDK, {ratio('ours-localbreaker', 'naive'):.2f}× "
            f"naive and costs {(1 - ratio('ours-localbreaker', 'session')) * 100:.0f} % against the plain "
            f"Session."
        )
    reading.append(
        "The proxy in fast mode, the Redis server and this client share the same "
        f"{len(os.sched_getaffinity(0))} CPUs, so every figure is CPU-bound on both sides and the ratios "
        "matter more than the absolute rates; latency includes queueing behind the other threads."
    )

    errors = [f"{r[n].client}: {r[n].first_error}" for r in rounds for n in names if r[n].first_error]
    section = "\n".join([
        SECTION,
        "",
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}",
        f"- Command: `{command}` (whole run {elapsed:.0f} s)",
        f"- Workload: {args.payments:,} PaymentIntent creates per client per round "
        "(confirm=true, usd, pm_card_visa, unique metadata[payment_id] and Idempotency-Key), "
        f"{args.threads} threads, {args.rounds} rounds with the order rotated each round, a fresh client "
        "per round, against the sandbox proxy in fast mode on loopback; the breaker's Redis "
        f"(`{args.redis_url}`) is local too. Rates: median (min–max) over rounds; p50/p99: median "
        "of the rounds' percentiles; connections: from the proxy's `connections_opened`, reset "
        "before each client's round. Ours and the plain Session: pool of "
        f"{POOL_MAXSIZE}, `pool_block=True`, timeouts {CONNECT_TIMEOUT:g}/{READ_TIMEOUT:g} s, `trust_env` off. "
        f"SDK: `StripeClient` with its requests client, telemetry off, `max_network_retries={RETRY_ATTEMPTS - 1}` "
        "(ours: 3 tries in all); no call failed, so no retry happened anywhere. Logging: root at "
        "WARNING to /dev/null (our client's per-call INFO line is filtered, not formatted).",
        "",
        table,
        "",
        ratios,
        "",
        open_line,
        "",
        " ".join(reading),
        "",
    ] + ([f"First errors seen: {'; '.join(errors[:4])}", ""] if errors else []))
    printable = section
    if profile_text:
        printable += "\n--- cProfile of ours (1 thread) ---\n" + profile_text
    return section, printable


def write_section(path: Path, section: str) -> None:
    """Replace (or append) only our section of docs/benchmarks.md."""
    replace_section(path, SECTION, section, title="Benchmarks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=2000, help="payments per client per round (2000)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (4)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported (5)")
    parser.add_argument("--open-calls", type=int, default=2000, help="calls timed with the breaker open (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured payments per client first (200)")
    parser.add_argument("--no-diagnostic", action="store_true",
                        help="skip the diagnostic rows (ours with a local breaker / without one)")
    parser.add_argument("--profile", action="store_true", help="also cProfile our client (1 thread)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="the breaker's Redis")
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"),
                        help="markdown file to write the section to")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    if not re.match(r"^redis://(127\.0\.0\.1|localhost)(:\d+)?(/\d+)?$", args.redis_url):
        parser.error("--redis-url must be a loopback Redis")
    redis.Redis.from_url(args.redis_url, socket_connect_timeout=1).ping()

    # Like production's handlers, minus the I/O: warnings are formatted, then discarded.
    devnull = open(os.devnull, "w")  # noqa: SIM115
    handler = logging.StreamHandler(devnull)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)

    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable, REPO),
                                                os.path.relpath(__file__, REPO), *sys.argv[1:]])
    names = PRIMARY + ([] if args.no_diagnostic else DIAGNOSTIC)
    run_id = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    rounds: list[dict[str, RunResult]] = []
    profile_text = ""
    with SandboxStack(fast=True) as stack:
        stack.set_fast(True)
        print(f"sandbox proxy {stack.proxy_url} (fast mode); {args.threads} threads, "
              f"{args.payments} payments x {args.rounds} rounds x {len(names)} clients", flush=True)
        for name in names:  # warm-up: imports, first connections, Lua script load
            measure(stack, name, workload(args.warmup, f"{run_id}-warm-{name}"), args.threads, args.redis_url)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            results: dict[str, RunResult] = {}
            for name in order:
                res = measure(stack, name, workload(args.payments, f"{run_id}-{rnd}-{name}"),
                              args.threads, args.redis_url)
                results[name] = res
                print(f"  round {rnd + 1} {name:15s} {res.rate:8,.0f}/s  p50 {res.pct(.5):6.2f} ms  "
                      f"p99 {res.pct(.99):6.2f} ms  errors {res.errors}  connections {res.connections}"
                      f"  requests {res.requests}", flush=True)
            rounds.append(results)
        opened = measure_open(stack, args.open_calls, args.redis_url)
        alone = measure_breaker_alone(2000, args.redis_url)
        if args.profile:
            profile_text = profile_ours(stack, min(args.payments, 3000), args.redis_url)
    elapsed = time.monotonic() - t0

    section, printable = report(args, rounds, opened, alone, command, elapsed, profile_text)
    print()
    print(printable)
    if not args.no_write:
        write_section(Path(args.output), section)
        print(f"written to {os.path.relpath(args.output, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
