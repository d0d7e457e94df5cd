#!/usr/bin/env python
"""Scenario 1, load: payments created through gunicorn at rising concurrency, against the
sandbox's fast mode (the proxy answers PaymentIntent creates itself, so the gateway's own
speed is out of the picture), beside what a user would write instead, on the same machine,
the same gunicorn settings (workers × threads) and the same concurrency:

* ``ours``   POST /api/v1/payments of the whole fleet (gunicorn, a Celery worker and beat
             running their health checks): API key, rate limit, idempotency record, payment
             and attempt rows, breaker, JSON logs at INFO;
* ``plain``  a Django view that calls ``stripe.PaymentIntent.create`` and saves a row,
             with Django's default settings (bench/fleet/baseline/);
* ``floor``  one pooled urllib3 call plus one INSERT on a pooled psycopg connection in a
             bare WSGI callable: no framework, nothing checked or recorded beyond the row;
* ``django`` the Django floor: the least a Django view can do for a tracked payment with the
             stack this product must use (the row INSERTed through the ORM under its
             Idempotency-Key, a ``requests.Session`` call with that key, the row UPDATEd;
             psycopg 3 with Django's native pool; bench/fleet/baseline/django_floor.py);
* ``recorded`` the floor plus the least the design's durability asks for: the payment
             INSERTed under its unique Idempotency-Key before the call, the call with that
             key, an UPDATE with the answer (bench/fleet/baseline/recorded.py). Not a
             target of the issue: it splits ours' distance to the floor into what recording
             the payment around the call costs by itself and what the rest of ours costs.

wrk drives each level for ``--seconds`` (one connection per concurrent client, a unique
Idempotency-Key per request); the apps take turns within each level, in an order that
rotates, so a noisy neighbour hits them all alike. Every process talks to PostgreSQL and
Redis directly (no fault proxy), and the server side has the machine's cores to itself
but for wrk's one thread.

Holds: no 500 and no socket error for ours at any level, every other answer a 201 or a
shed 503 (overload: the accept loop's server_busy, the gateway limit's gateway_saturated); every 201 is a succeeded payment
in our database; at the best concurrency our throughput is ≥ 2× the plain view's and
≥ 0.7× the Django floor's (ours against the bare floor is reported, not a target), for each
gunicorn shape (the product's default 2 × 8 threads, and 2 × 4: on two
cores a CPU-bound run favours fewer threads). Writes docs/reliability.md ("## 1. Load ...")
and a chart per shape, docs/load-<workers>x<threads>.svg.

    apt-get install -y wrk   # once; wrk drives the load
    .venv/bin/python bench/fleet/load.py [--levels 1,2,4,8,16,32] [--seconds 8] [--workers 2] [--threads 8,4]
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import BIN, PG, PG_USER, REDIS, REPO, Fleet  # noqa: E402
from tests.support.processes import wait_http  # noqa: E402
from tests.support.tcpproxy import _free_port  # noqa: E402

TITLE = "1. Load: ours against a plain Django view, the Django floor and the floor"
LOAD_REDIS_DB = 8
APPS = ("ours", "plain", "django", "floor", "recorded")
DOCS = REPO / "docs"


def svg_path(workers: int, threads: int) -> Path:
    return DOCS / f"load-{workers}x{threads}.svg"


# One wrk Lua state per wrk thread: a unique Idempotency-Key per request, statuses tallied
# per thread and added up in done(), printed as machine-readable lines.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  prefix, path, auth, body = args[1] .. "-" .. tid, args[2], args[3], args[4]
  counter, statuses = 0, {}
end
function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. "-" .. counter}
  if auth ~= "-" then headers["Authorization"] = "Bearer " .. auth end
  return wrk.format("POST", path, headers, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
  end
  io.write("STATUSES")
  for k, v in pairs(total) do io.write(" ", k, "=", v) end
  io.write("\n")
  io.write(string.format("LATENCY %d %d %d\n", latency:percentile(50), latency:percentile(99), latency.max))
  local e = summary.errors
  io.write(string.format("SUMMARY %d %d %d %d %d %d\n", summary.requests, summary.duration,
                         e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class Level:
    """One app at one concurrency: what wrk saw."""

    app: str
    clients: int
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    cpu_ms: float = 0.0  # CPU time of the app's gunicorn (master and workers) per request
    # CPU time per request of everything on the machine, by process group (see `machine_cpu`).
    cpu_by: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def created(self) -> int:
        return self.statuses.get(201, 0)


@dataclass
class Result:
    levels: list[Level] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def get(self, app: str, clients: int) -> Level:
        return next(lv for lv in self.levels if lv.app == app and lv.clients == clients)

    def best(self, app: str) -> Level:
        return max((lv for lv in self.levels if lv.app == app), key=lambda lv: lv.rps)


def fleet_for(database: str, *, workers: int, threads: int, redis_db: int = LOAD_REDIS_DB,
              log_dir: Path | None = None) -> Fleet:
    direct = {  # no TCP proxy on the data path: it would cost CPU the servers need
        "DATABASE_URL": f"postgres://{PG_USER}@{PG[0]}:{PG[1]}/{database}",
        "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
    }
    production = {  # as deployed: DEBUG off (the test settings turn it on), logs at INFO
        "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "INFO",
    }
    return Fleet(database=database, redis_db=redis_db, web_workers=workers, threads=threads, celery_workers=1,
                 celery_concurrency=2, beat=True, log_dir=log_dir, DB_MAX_CONNECTIONS=str(threads),
                 DB_MIN_CONNECTIONS="2", GUNICORN_THREADS=str(threads),
                 # one thread of each worker stays free to refuse a call over the gateway limit at once
                 PAYMENT_CONCURRENCY_MAX=str(max(1, threads - 1)), **direct, **production)


def start_baselines(fleet: Fleet, *, workers: int, threads: int) -> dict[str, str]:
    """The plain view and the three floors, each in its own gunicorn with the fleet's settings."""
    import psycopg

    from bench.fleet.baseline.table import RECORDED_TABLE_SQL, TABLE_SQL

    with psycopg.connect(fleet.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(TABLE_SQL)
        conn.execute(RECORDED_TABLE_SQL)
    urls: dict[str, str] = {}
    for app, target in (("plain", "bench.fleet.baseline.wsgi:application"),
                        ("django", "bench.fleet.baseline.django_floor:application"),
                        ("floor", "bench.fleet.baseline.floor:application"),
                        ("recorded", "bench.fleet.baseline.recorded:application")):
        port = _free_port()
        log = open(fleet.log_dir / f"{app}.log", "ab")
        proc = subprocess.Popen([
            str(BIN / "gunicorn"), target, "-c", str(REPO / "config/gunicorn.py"), "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads),
        ], cwd=REPO, env={**fleet.env, "PROCESS_ROLE": app}, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        fleet.procs[app] = proc  # stopped with the fleet
        urls[app] = f"http://127.0.0.1:{port}"
        wait_http(f"{urls[app]}/", proc)  # any answer: the server is up
    return urls


CPU_GROUPS = ("postgres", "sandbox", "redis", "celery")


def machine_cpu(app_root: int) -> dict[str, float]:
    """CPU seconds so far of every process, summed by group: the app's gunicorn tree (`app`),
    PostgreSQL, the sandbox gateway, Redis, Celery, `wrk` (this script's finished children)
    and `other` (anything else running on the machine)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    children = os.times()
    totals = dict.fromkeys(("app", *CPU_GROUPS, "wrk", "other"), 0.0)
    totals["wrk"] = children.children_user + children.children_system
    rows = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        rows.append((pid, cmdline, (int(fields[11]) + int(fields[12])) / ticks))
    app, grew = {app_root}, True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in app} - app
        grew = bool(children)
        app |= children
    for pid, cmdline, seconds in rows:
        group = "app" if pid in app else next((g for g in CPU_GROUPS if g in cmdline), "other")
        if group == "other" and "gunicorn" in cmdline:
            continue  # the other apps' servers, idle while this one runs
        totals[group] += seconds
    return totals


def drive(url: str, *, clients: int, seconds: float, tag: str, api_key: str, body: str, script: Path,
          server_pid: int) -> Level:
    """wrk against POST {url}/api/v1/payments; its Lua script's lines parsed into a Level."""
    machine_before = machine_cpu(server_pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url,
         "--", tag, "/api/v1/payments", api_key or "-", body],
        capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr or out.stdout}")
    out = out.stdout
    level = Level(app="", clients=clients)
    statuses = re.search(r"^STATUSES(.*)$", out, re.M)
    latency = re.search(r"^LATENCY (\d+) (\d+) (\d+)$", out, re.M)
    summary = re.search(r"^SUMMARY (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.M)
    if not (statuses and latency and summary):
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    level.statuses = {int(k): int(v) for k, v in re.findall(r"(\d+)=(\d+)", statuses.group(1))}
    level.p50_ms, level.p99_ms = int(latency.group(1)) / 1000, int(latency.group(2)) / 1000
    level.requests, level.seconds = int(summary.group(1)), int(summary.group(2)) / 1e6
    level.socket_errors = sum(int(summary.group(i)) for i in range(3, 7))
    machine_after = machine_cpu(server_pid)
    level.cpu_by = {group: (machine_after[group] - machine_before[group]) * 1000 / max(1, level.requests)
                    for group in machine_after}
    level.cpu_ms = level.cpu_by["app"]  # the app's gunicorn master and workers
    return level


def run(fleet: Fleet, urls: dict[str, str], pids: dict[str, int], *, api_key: str, run_id: str, levels: list[int],
        seconds: float, warmup: float = 3.0) -> Result:
    from payments.models import Payment

    body = json.dumps({"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa",
                       "metadata": {"fleet_run": run_id}})
    result = Result()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "pay.lua"
        script.write_text(WRK_SCRIPT)

        def one(app: str, clients: int, secs: float, tag: str) -> Level:
            key = api_key if app == "ours" else ""
            level = drive(urls[app], clients=clients, seconds=secs, tag=tag, api_key=key, body=body, script=script,
                          server_pid=pids[app])
            level.app = app
            return level

        for app in APPS:  # connections, pools, code paths warm before anything is counted
            one(app, max(levels), warmup, f"{run_id}-warm-{app}")
        for i, clients in enumerate(levels):
            order = APPS[i % len(APPS):] + APPS[:i % len(APPS)]
            for app in order:
                level = one(app, clients, seconds, f"{run_id}-{app}-{clients}")
                result.levels.append(level)
                print(f"  {app:5} c={clients:3} {level.rps:8.1f}/s p50 {level.p50_ms:7.1f} ms "
                      f"p99 {level.p99_ms:7.1f} ms cpu {level.cpu_ms:5.2f} ms/req {level.statuses} "
                      f"socket errors {level.socket_errors}",
                      flush=True)
    ours = [lv for lv in result.levels if lv.app == "ours"]
    # wrk stops mid-request at the end of each run; the server still finishes those payments.
    deadline = common.time.monotonic() + 20
    counted = _payments_by_status(Payment, run_id)
    while set(counted) - {"succeeded"} and common.time.monotonic() < deadline:
        common.time.sleep(0.5)
        counted = _payments_by_status(Payment, run_id)
    created = sum(lv.created for lv in ours)
    best = result.best("ours")
    plain_best, floor_best, recorded_best = result.best("plain"), result.best("floor"), result.best("recorded")
    django_best = result.best("django")
    result.figures = {
        "best_clients": best.clients, "ours_best": best.rps, "plain_best": plain_best.rps,
        "floor_best": floor_best.rps, "plain_best_clients": plain_best.clients,
        "floor_best_clients": floor_best.clients, "payments": counted, "created_201": created,
        "recorded_best": recorded_best.rps, "recorded_best_clients": recorded_best.clients,
        "django_best": django_best.rps, "django_best_clients": django_best.clients,
    }
    result.checks = {
        "no 500 from ours at any level": not any(s >= 500 and s != 503 for lv in ours for s in lv.statuses),
        # More clients than threads is overload by design: a request that would queue too long
        # is shed by the worker's accept loop (503 server_busy) and a call over the gateway
        # limit is refused (503 gateway_saturated, the payment left pending for its retry) —
        # the same gunicorn config sheds the baselines alike. Anything else is a defect.
        "no socket error or timeout for ours": not any(lv.socket_errors for lv in ours),
        "every request of ours answered 201 or shed with 503":
        all(lv.created + lv.statuses.get(503, 0) == lv.requests for lv in ours),
        "every 201 is a succeeded payment in our database; only shed ones pending":
        counted.get("succeeded", 0) >= created and not set(counted) - {"succeeded", "pending"},
        "best throughput ≥ 2× the plain view's best": best.rps >= 2 * plain_best.rps,
        "best throughput ≥ 0.7× the Django floor's best": best.rps >= 0.7 * django_best.rps,
    }
    return result


def _payments_by_status(model: Any, run_id: str) -> dict[str, int]:
    from django.db.models import Count

    rows = model.objects.filter(metadata__fleet_run=run_id).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


INTRO = (
    "wrk (one thread, one connection per client, a unique Idempotency-Key per request) creates payments for "
    "{seconds:g} s per level and app; the gateway is the sandbox proxy in fast mode. `ours` is the whole fleet "
    "(gunicorn, a Celery worker and beat; production settings, JSON logs at INFO), `plain` a Django view calling "
    "the stripe SDK and saving a row (Django's defaults), `django` the Django floor (the least a Django view does "
    "for a tracked payment with this product's stack: ORM INSERT under the Idempotency-Key, a requests.Session "
    "call with it, ORM UPDATE; psycopg 3 with Django's pool), `floor` one pooled urllib3 call + one INSERT in bare "
    "WSGI, `recorded` the floor with the payment INSERTed under its Idempotency-Key before the call and "
    "UPDATEd with the answer after it (the least the design's durability asks for; not a target, a measure of "
    "what that alone costs). All five run in gunicorn with the same workers × threads; they take turns within "
    "each level. "
    "*cpu* is the CPU time of that app's gunicorn processes per request; the gateway proxy, PostgreSQL, Redis "
    "and wrk come on top and share the same two cores (the second table of each shape adds them all up)."
)


def report(r: Result, *, workers: int, threads: int) -> str:
    f = r.figures
    levels = sorted({lv.clients for lv in r.levels})
    lines = [
        f"### gunicorn {workers} workers × {threads} threads",
        "", "| clients | ours /s | p50 / p99 ms | plain /s | p50 / p99 ms | django /s | p50 / p99 ms "
        "| floor /s | p50 / p99 ms | recorded /s | p50 / p99 ms | ours ÷ plain | ours ÷ django | ours ÷ floor "
        "| ours ÷ recorded | cpu ms/req ours / plain / django / floor / recorded |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in levels:
        o, p, dj, fl, rc = (r.get(app, c) for app in APPS)
        lines.append(
            f"| {c} | {o.rps:.0f} | {o.p50_ms:.1f} / {o.p99_ms:.1f} | {p.rps:.0f} | {p.p50_ms:.1f} / {p.p99_ms:.1f} "
            f"| {dj.rps:.0f} | {dj.p50_ms:.1f} / {dj.p99_ms:.1f} "
            f"| {fl.rps:.0f} | {fl.p50_ms:.1f} / {fl.p99_ms:.1f} | {rc.rps:.0f} | {rc.p50_ms:.1f} / {rc.p99_ms:.1f} "
            f"| {o.rps / p.rps:.2f}× | {o.rps / dj.rps:.2f}× | {o.rps / fl.rps:.2f}× | {o.rps / rc.rps:.2f}× "
            f"| {o.cpu_ms:.1f} / {p.cpu_ms:.1f} / {dj.cpu_ms:.1f} / {fl.cpu_ms:.1f} / {rc.cpu_ms:.1f} |")
    errors = {lv.app: 0 for lv in r.levels}
    for lv in r.levels:
        errors[lv.app] += lv.socket_errors + sum(n for s, n in lv.statuses.items() if s >= 300)
    lines += [
        "",
        f"Best: ours {f['ours_best']:.0f}/s at {f['best_clients']} clients, plain {f['plain_best']:.0f}/s at "
        f"{f['plain_best_clients']}, floor {f['floor_best']:.0f}/s at {f['floor_best_clients']}: ours is "
        f"**{f['ours_best'] / f['plain_best']:.2f}× the plain view** (target ≥ 2×), "
        f"**{f['ours_best'] / f['django_best']:.2f}× the Django floor** ({f['django_best']:.0f}/s at "
        f"{f['django_best_clients']}; target ≥ 0.7×) and {f['ours_best'] / f['floor_best']:.2f}× "
        "the bare floor (reported, not a target; best against best). The recorded floor's best: "
        f"{f['recorded_best']:.0f}/s at {f['recorded_best_clients']} clients, {f['recorded_best'] / f['floor_best']:.2f}× "
        f"the floor; ours is {f['ours_best'] / f['recorded_best']:.2f}× the recorded floor.",
        f"Non-2xx answers and socket errors over all levels: {errors}. Our payments of the run by status: "
        f"{f['payments']} ({f['created_201']} answered 201 within the counted runs; the rest are the warm-up's "
        "and those wrk left unanswered when a run ended).",
        "", "Where the CPU goes: ms of CPU per payment on the whole machine at each app's best level, by "
        "process (the two cores give 2000 ms per second, so throughput is at most 2000 ÷ total):",
        "", "| app | total | its gunicorn | PostgreSQL | gateway (sandbox) | Redis | Celery | wrk | other |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_cpu_row(app, r.best(app)) for app in APPS),
        "", f"![throughput by concurrency, {workers}×{threads}]({svg_path(workers, threads).name})",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def _cpu_row(app: str, level: Level) -> str:
    c = level.cpu_by
    cells = (c.get(g, 0.0) for g in ("app", *CPU_GROUPS, "wrk", "other"))
    return f"| {app} ({level.clients} clients) | {sum(c.values()):.2f} | " + " | ".join(f"{v:.2f}" for v in cells) + " |"


def svg(r: Result) -> str:
    """Throughput against concurrency, one line per app: a picture of the table."""
    width, height, left, bottom, top, right = 560, 300, 56, 40, 20, 90
    levels = sorted({lv.clients for lv in r.levels})
    peak = max(lv.rps for lv in r.levels) * 1.1 or 1.0
    colours = {"ours": "#1f6feb", "plain": "#d29922", "django": "#8250df", "floor": "#8b949e", "recorded": "#2da44e"}

    def x(i: int) -> float:
        return left + i * (width - left - right) / max(1, len(levels) - 1)

    def y(v: float) -> float:
        return height - bottom - v / peak * (height - bottom - top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" font-family="sans-serif" '
             f'font-size="12"><rect width="{width}" height="{height}" fill="#fff"/>']
    for k in range(5):
        v = peak * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for i, c in enumerate(levels):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{c}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">concurrent '
                 f'clients</text><text x="{width - right + 10}" y="{height - bottom + 4}">payments/s</text>')
    target = r.best("django").rps * 0.7  # the target line: 0.7 × the Django floor's best
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(target):.1f}" y2="{y(target):.1f}" stroke="#8250df" '
                 f'stroke-dasharray="5 4"/><text x="{width - right + 10}" y="{y(target) + 4:.1f}" fill="#8250df">'
                 '0.7 × django</text>')
    for n, app in enumerate(APPS):
        points = " ".join(f"{x(i):.1f},{y(r.get(app, c).rps):.1f}" for i, c in enumerate(levels))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colours[app]}" stroke-width="2.5"/>')
        parts.append(f'<text x="{width - right + 10}" y="{top + 20 + 18 * n}" fill="{colours[app]}" '
                     f'font-weight="bold">{app}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", default="8,4", help="gunicorn threads per worker; one run per value")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    levels = [int(v) for v in args.levels.split(",")]
    api_key = common.script_api_key(args.database)
    sections, ok = [INTRO.format(seconds=args.seconds)], True
    for threads in [int(v) for v in args.threads.split(",")]:
        print(f"gunicorn {args.workers} workers x {threads} threads", flush=True)
        with fleet_for(args.database, workers=args.workers, threads=threads) as fleet:
            urls = {"ours": fleet.base_url, **start_baselines(fleet, workers=args.workers, threads=threads)}
            pids = {app: fleet.procs["web1" if app == "ours" else app].pid for app in APPS}
            result = run(fleet, urls, pids, api_key=api_key, run_id=common.new_run_id(), levels=levels,
                         seconds=args.seconds)
        sections.append(report(result, workers=args.workers, threads=threads))
        ok = ok and result.ok
        if not args.no_write:
            svg_path(args.workers, threads).write_text(svg(result))
    return common.script_finish(TITLE, "\n\n".join(sections), ok=ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
