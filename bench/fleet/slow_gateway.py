#!/usr/bin/env python
"""Scenario 8, a slow gateway under open-loop load: the Procfile's web (2 gunicorn workers),
a Celery worker and beat against the sandbox, whose fault proxy delays every
/v1/payment_intents call by the cell's latency (`latency_before`: the gateway has not seen the
request yet while it waits, below the 10 s read timeout). Payments are offered open-loop (a
new request at a fixed rate, each with its own Idempotency-Key, each client waiting up to
45 s) while a prober asks /health/live, /health/ready and /admin/login/ every 250 ms with a
1 s timeout.

Matrix: gateway latency × offered load, in multiples of capacity (capacity = the fleet's
concurrency limit ÷ latency, the limit being web processes × PAYMENT_CONCURRENCY_MAX).
For each cell: answers by code, p50/p99 answer time, payments completed per second against
capacity, the longest run of failed probes and the probes' p99, CPU per completed payment.

Holds in every cell: 0 failed probes (p99 < 100 ms), 0 answers 500, 0 clients without an
answer within PAYMENT_DEADLINE + 2 s, every 503 with Retry-After; overloaded cells (≥ 2×):
completed/s ≥ 90 % of capacity and shed answers in < 100 ms. At the end, every payment
settled and the ledger equal to the gateway's (0 duplicate charges, 0 lost payments).

    .venv/bin/python bench/fleet/slow_gateway.py                       # the full matrix (~25 min)
    .venv/bin/python bench/fleet/slow_gateway.py --latencies 0.3,6 --loads 1,5 --seconds 15
    .venv/bin/python bench/fleet/slow_gateway.py --latencies 0,0.3 --rates 300 --pool 48 --no-write  # tolerance
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import requests  # noqa: E402

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Hit, Load, Payer  # noqa: E402

TITLE = "8. Slow gateway: bulkheads, load shedding and capacity"
AMOUNT = 1800
WEB_WORKERS = 2
POOL = 10  # PAYMENT_POOL_MAXSIZE = PAYMENT_CONCURRENCY_MAX per process (the contract's default)
DEADLINE_S = 25.0  # PAYMENT_DEADLINE (the default)
CLIENT_TIMEOUT_S = 45.0
PROBE_EVERY_S, PROBE_TIMEOUT_S = 0.25, 1.0
PROBES = ("/health/live", "/health/ready", "/admin/login/")
SVG_THROUGHPUT = common.REPO / "docs" / "slow-gateway-throughput.svg"
SVG_PROBES = common.REPO / "docs" / "slow-gateway-probes.svg"


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    # The production defaults for the gateway, not the suite's short ones: the cells' latencies
    # are set against a 10 s read timeout and a 25 s deadline.
    return Fleet(database=database, redis_db=redis_db, web_workers=WEB_WORKERS, threads=2 * POOL, celery_workers=1,
                 beat=True, log_dir=log_dir, PAYMENT_TIMEOUT="10000", PAYMENT_CONNECT_TIMEOUT="3000",
                 PAYMENT_DEADLINE=str(int(DEADLINE_S * 1000)), PAYMENT_RETRY_DELAY="1000",
                 PAYMENT_SLOW_CALL_MS="8000", PAYMENT_POOL_MAXSIZE=str(POOL), BREAKER_OPEN_MS="30000",
                 DB_MAX_CONNECTIONS="20", DB_MIN_CONNECTIONS="2", HEALTH_CHECK_INTERVAL="10")


@dataclass
class Probe:
    at: float  # s since the cell began
    path: str
    ok: bool
    elapsed: float


@dataclass
class Cell:
    latency: float
    load: float  # multiple of capacity
    rate: float  # payments offered per second
    capacity: float  # payments per second the limit allows at this latency
    seconds: float
    hits: list[Hit] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    cpu_s: float = 0.0
    limits: list[int] = field(default_factory=list)  # the fleet's limit, sampled
    call_ms: list[float] = field(default_factory=list)  # the limiter's mean call latency, sampled

    def answered(self, code: int) -> list[Hit]:
        return [h for h in self.hits if h.status == code]

    @property
    def completed_per_s(self) -> float:
        return len(self.answered(201)) / self.seconds

    def longest_failed_run(self, path: str) -> int:
        run = longest = 0
        for p in sorted((p for p in self.probes if p.path == path), key=lambda p: p.at):
            run = 0 if p.ok else run + 1
            longest = max(longest, run)
        return longest

    def checks(self) -> dict[str, bool]:
        shed = [h for h in self.answered(503)]
        probes_ok = all(p.ok for p in self.probes) and common.pct([p.elapsed for p in self.probes], 99) < 0.1
        checks = {
            "0 failed probes, p99 < 100 ms": probes_ok,
            "0 answers 500": not any(h.status >= 500 and h.status != 503 for h in self.hits),
            "every client answered within PAYMENT_DEADLINE + 2 s": all(
                h.status and h.elapsed <= DEADLINE_S + 2 for h in self.hits),
            "every 503 with Retry-After": all((h.retry_after or "").isdigit() for h in shed),
        }
        if self.load >= 2:
            checks["completed/s >= 90 % of capacity"] = self.completed_per_s >= 0.9 * self.capacity
            checks["shed in < 100 ms (p99)"] = bool(shed) and common.pct([h.elapsed for h in shed], 99) < 0.1
        return checks


def _cpu_seconds(pids: set[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _prober(base: str, cell: Cell, t0: float, stop: threading.Event) -> None:
    def one(session: requests.Session, path: str) -> None:
        started = time.monotonic()
        try:
            ok = session.get(base + path, timeout=PROBE_TIMEOUT_S).status_code == 200
        except requests.RequestException:
            ok = False
        cell.probes.append(Probe(started - t0, path, ok, time.monotonic() - started))

    sessions = {path: requests.Session() for path in PROBES}
    with ThreadPoolExecutor(len(PROBES) * 4) as pool:
        next_at = time.monotonic()
        while not stop.is_set():
            for path in PROBES:
                pool.submit(one, sessions[path], path)
            next_at += PROBE_EVERY_S
            stop.wait(max(0.0, next_at - time.monotonic()))


def run_cell(fleet: Fleet, payer: Payer, *, latency: float, load: float, seconds: float,
             rate: float | None = None) -> Cell:
    """One cell; `rate` (payments/s) instead of `load` when given (a latency of 0 has no capacity)."""
    capacity = WEB_WORKERS * POOL / latency if latency else math.inf
    if rate is None:
        rate = load * capacity
    else:
        load = rate / capacity
    cell = Cell(latency, load, rate, capacity, seconds)
    fleet.sandbox.clear()
    if latency:
        fleet.sandbox.fault("latency_before", delay_ms=int(latency * 1000), method="POST",
                            path_prefix="/v1/payment_intents")
    pids = _web_pids(fleet)
    sink = Load()
    local = threading.local()
    stop = threading.Event()
    t0 = time.monotonic()
    prober = threading.Thread(target=_prober, args=(fleet.base_url, cell, t0, stop), daemon=True)
    prober.start()

    def sampler() -> None:
        while not stop.wait(1.0):
            docs = fleet.own_docs()
            limit = sum((d.get("gateway_limit") or {}).get("limit", 0) for d in docs if d.get("role") == "web")
            cell.limits.append(limit)
            cell.call_ms += [float((d.get("gateway_limit") or {}).get("latency_ms") or 0) for d in docs
                             if d.get("role") == "web" and (d.get("gateway_limit") or {}).get("latency_ms")]

    threading.Thread(target=sampler, daemon=True).start()

    def pay(n: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        idem = common.new_key()
        body = {"amount": AMOUNT, "currency": "usd", "payment_method": "pm_card_visa",
                "metadata": {"fleet_run": payer.run_id}}
        common.call(session, sink, "pay", "POST", f"{payer.base_urls[n % len(payer.base_urls)]}/api/v1/payments",
                    idem=idem, timeout=CLIENT_TIMEOUT_S, json=body,
                    headers={"Authorization": f"Bearer {payer.api_key}", "Idempotency-Key": idem})

    total = int(rate * seconds)
    cpu0 = _cpu_seconds(pids)
    workers = min(2000, int(rate * CLIENT_TIMEOUT_S) + 8)
    with ThreadPoolExecutor(workers) as pool:
        for n in range(total):
            wait = t0 + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pool.submit(pay, n)
    stop.set()
    prober.join(5)
    cell.cpu_s = _cpu_seconds(pids) - cpu0
    cell.hits = [h for h in sink.hits]
    # Offered requests that got a kwarg timeout show as status 0 (no answer within 45 s).
    fleet.sandbox.clear()
    return cell


def _web_pids(fleet: Fleet) -> set[int]:
    web = {proc.pid for name, proc in fleet.procs.items() if name.startswith("web")}
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return web | {pid for pid, ppid in parents.items() if ppid in web}


@dataclass
class Result:
    cells: list[Cell] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)
    left_unsettled: int = 0
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


def run(fleet: Fleet, *, api_key: str, run_id: str, latencies: list[float], loads: list[float],
        seconds: float, rates: list[float] | None = None) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    fleet.wait_publishers(web=WEB_WORKERS, worker=1, timeout=60)
    r = Result()
    for latency in latencies:
        for load, rate in ([(0.0, r) for r in rates] if rates else [(load, None) for load in loads]):
            cell = run_cell(fleet, payer, latency=latency, load=load, seconds=seconds, rate=rate)
            r.cells.append(cell)
            print(cell_row(cell), flush=True)
            time.sleep(2)  # the limit recovers between cells is not what is measured: note it
    left = common.settle_all(fleet, run_id, timeout=90.0)
    r.left_unsettled = len(left)
    hits = [h for c in r.cells for h in c.hits]
    r.ledger = common.ledger_check(fleet.sandbox, run_id, hits)
    for c in r.cells:
        for name, ok in c.checks().items():
            key = f"{name}"
            r.checks[key] = r.checks.get(key, True) and ok
    r.checks["0 duplicate charges, 0 lost payments, ledger = gateway"] = common.ledger_ok(r.ledger)
    return r


def cell_row(c: Cell) -> str:
    times = [h.elapsed for h in c.hits if h.status]
    shed = [h.elapsed for h in c.answered(503)]
    codes = common.status_counts(c.hits)
    shed_codes: dict[str, int] = {}
    for h in c.answered(503):
        shed_codes[h.code] = shed_codes.get(h.code, 0) + 1
    probes = [p.elapsed for p in c.probes]
    worst = max((c.longest_failed_run(p) for p in PROBES), default=0)
    completed = len(c.answered(201))
    cpu = f"{c.cpu_s / completed * 1000:.1f}" if completed else "-"
    limit = f"{min(c.limits)}–{max(c.limits)}" if c.limits else "-"
    if c.call_ms:  # a call holds its slot for the gateway's latency plus the HTTP round-trip's own
        limit += f", call {common.median(c.call_ms):.0f} ms"
    if math.isfinite(c.capacity):
        offered = f"{c.load:g}× ({c.rate:.1f}/s)"
        completed_vs = f"{c.completed_per_s:.2f} of {c.capacity:.2f} ({c.completed_per_s / c.capacity:.0%})"
    else:
        offered, completed_vs = f"{c.rate:.1f}/s", f"{c.completed_per_s:.2f} (no gateway latency)"
    return (f"| {c.latency:g} s | {offered} | {codes} | {shed_codes or '-'} | "
            f"{common.pct(times, 50) * 1000:.0f} / {common.pct(times, 99) * 1000:.0f} | "
            f"{(common.pct(shed, 99) * 1000) if shed else float('nan'):.0f} | {completed_vs} | {limit} | "
            f"{worst} | {common.pct(probes, 99) * 1000:.0f} | {cpu} |")


def report(r: Result) -> str:
    lines = [
        f"The Procfile's web ({WEB_WORKERS} gunicorn workers, GUNICORN_THREADS={2 * POOL}, probe and ops lanes of "
        f"2 threads each), a Celery worker and beat; PAYMENT_POOL_MAXSIZE = PAYMENT_CONCURRENCY_MAX = {POOL} per "
        f"process, PAYMENT_TIMEOUT 10 s, PAYMENT_DEADLINE {DEADLINE_S:.0f} s, PAYMENT_SLOW_CALL_MS 8000. The sandbox "
        "delays every /v1/payment_intents call by the cell's latency; payments are offered open-loop at "
        f"a multiple of capacity (= {WEB_WORKERS} × {POOL} ÷ latency) for {r.cells[0].seconds if r.cells else 0:g} s "
        f"each, clients wait up to {CLIENT_TIMEOUT_S:.0f} s; a prober asks {', '.join(PROBES)} every "
        f"{PROBE_EVERY_S * 1000:.0f} ms with a {PROBE_TIMEOUT_S:.0f} s timeout.",
        "",
        "| latency | offered | answers by status | 503 codes | p50 / p99 answer ms | shed p99 ms | "
        "completed/s of capacity | fleet limit, mean call | longest failed-probe run | probe p99 ms | web CPU ms / payment |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[cell_row(c) for c in r.cells],
        "",
        f"Still unsettled at the end: {r.left_unsettled}. Ledger: "
        f"{ {k: (len(v) if isinstance(v, list) else v) for k, v in r.ledger.items()} }.",
        "",
        "![throughput against offered load](slow-gateway-throughput.svg)",
        "",
        "![probe answer time over the run](slow-gateway-probes.svg)",
        *common.verdict_lines(r.checks),
    ]
    failed = [f"{c.latency:g} s × {c.load:g}: {name}" for c in r.cells for name, ok in c.checks().items() if not ok]
    if failed:
        lines += ["", "Cells that missed a target:", *[f"- {f}" for f in failed]]
    return "\n".join(lines)


def svg_throughput(r: Result) -> str:
    """Completed payments/s against offered load, one line per latency, as % of capacity."""
    width, height, left, bottom, top, right = 560, 300, 56, 40, 20, 100
    loads = sorted({c.load for c in r.cells})
    colours = ["#1f6feb", "#d29922", "#2da44e", "#cf222e", "#8250df"]
    peak = max([c.completed_per_s / c.capacity * 100 for c in r.cells] + [100]) * 1.1

    def x(i: int) -> float:
        return left + i * (width - left - right) / max(1, len(loads) - 1)

    def y(v: float) -> float:
        return height - bottom - v / peak * (height - bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             f'font-size="12"><rect width="{width}" height="{height}" fill="#fff"/>']
    for v in (0, 25, 50, 75, 90, 100):
        dash = ' stroke-dasharray="5 4"' if v == 90 else ""
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"{dash}/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}%</text>')
    for i, load in enumerate(loads):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{load:g}×</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">offered load '
                 '(× capacity)</text>')
    for n, latency in enumerate(sorted({c.latency for c in r.cells})):
        cells = sorted((c for c in r.cells if c.latency == latency), key=lambda c: c.load)
        points = " ".join(f"{x(loads.index(c.load)):.1f},{y(c.completed_per_s / c.capacity * 100):.1f}"
                          for c in cells)
        colour = colours[n % len(colours)]
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        parts.append(f'<text x="{width - right + 10}" y="{top + 20 + 18 * n}" fill="{colour}" '
                     f'font-weight="bold">{latency:g} s</text>')
    parts.append(f'<text x="{left + 4}" y="{top + 10}">completed payments/s, % of capacity</text></svg>')
    return "\n".join(parts) + "\n"


def svg_probes(r: Result) -> str:
    """Every probe's answer time over the run (cells one after another), failures in red."""
    width, height, left, bottom, top, right = 560, 240, 56, 40, 20, 20
    points: list[tuple[float, float, bool]] = []
    offset = 0.0
    for c in r.cells:
        points += [(offset + p.at, p.elapsed * 1000, p.ok) for p in c.probes]
        offset += c.seconds + 1
    span = max(offset, 1.0)
    peak = max([v for _, v, _ in points] + [100.0]) * 1.1

    def x(t: float) -> float:
        return left + t / span * (width - left - right)

    def y(v: float) -> float:
        return height - bottom - v / peak * (height - bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             f'font-size="12"><rect width="{width}" height="{height}" fill="#fff"/>']
    for v in (0, peak / 2, peak / 1.1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(100):.1f}" y2="{y(100):.1f}" stroke="#cf222e" '
                 'stroke-dasharray="5 4"/>')
    for t, v, ok in points:
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="1.5" fill="{"#1f6feb" if ok else "#cf222e"}"/>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">seconds of load, '
                 'cells one after another; probe answer ms (dashed: 100 ms)</text></svg>')
    return "\n".join(parts) + "\n"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    global POOL
    parser = common.script_parser(__doc__)
    common.add_redis_db_option(parser)
    parser.add_argument("--latencies", default="0.3,3,6,9", help="gateway latencies, s")
    parser.add_argument("--loads", default="0.5,1,2,5", help="offered load, multiples of capacity")
    parser.add_argument("--seconds", type=float, default=20, help="offered load per cell, s")
    parser.add_argument("--rates", default="", help="offered payments/s instead of --loads")
    parser.add_argument("--pool", type=int, default=POOL,
                        help="PAYMENT_POOL_MAXSIZE = PAYMENT_CONCURRENCY_MAX per process (threads: twice that)")
    args = parser.parse_args(argv)
    POOL = args.pool  # a script's one knob: capacity and the fleet's sizing follow it
    api_key = common.script_api_key(args.database, args.redis_db)
    with fleet_for(args.database, redis_db=args.redis_db) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), latencies=_floats(args.latencies),
                     loads=_floats(args.loads), seconds=args.seconds, rates=_floats(args.rates) or None)
    if not args.no_write:
        SVG_THROUGHPUT.write_text(svg_throughput(result))
        SVG_PROBES.write_text(svg_probes(result))
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
