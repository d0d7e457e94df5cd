#!/usr/bin/env python
"""Scenario 1b, where ours' CPU goes: the load of scenario 1 at one concurrency, with py-spy
sampling the gunicorn workers of ours (only while a thread holds the GIL, i.e. Python and C
code that runs with it), the samples sorted into the parts of a payment request, beside the
user and system CPU per payment of ours and of the recorded floor (bench/fleet/baseline/
recorded.py: the payment written before the gateway call under its key, the answer after)
measured over the same kind of run.

A sample goes to the deepest part its stack passes through: a log line written while the
payment is opened counts as "log lines", urllib3 under the requests Session as urllib3.
Milliseconds per payment are each part's share of the samples times the workers' user CPU
per payment, an estimate (C code that runs without the GIL, such as libpq waiting, is user
time no sample sees); system time is shown apart.

    .venv/bin/python bench/fleet/profile_web.py [--clients 8] [--seconds 15] [--threads 4]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common, load  # noqa: E402
from bench.fleet.common import BIN  # noqa: E402

TITLE = "1b. Load: where ours' CPU goes"
RATE = 400  # samples per second and worker

# (part, frame prefixes); a sample goes to the deepest part on its stack, else to gunicorn.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("Django: handler, middleware, URL resolving", ("WSGIHandler.__call__ (django/",)),
    ("API view: body parsing, validation, JSON answer", ("api_view.<locals>.decorator.<locals>.wrapper (",)),
    ("API key (cached in the process)", ("authenticate (payments/api/keycache", "confirm (payments/api/keycache")),
    ("rate limit: a Redis script per request", ("rate_limit_check (",)),
    ("open: payment and idempotency claim, one statement", ("payment_open (payments/services/create_path_sql",)),
    ("gateway call: requests Session, retry, deadline, breaker, attempt log", ("GatewayClient._call (",)),
    ("gateway call: urllib3 and http.client (the floor's call costs this too)", ("HTTPConnectionPool.urlopen (",)),
    ("answer: payment, attempts and kept answer, one statement", ("payment_apply_first (",)),
    ("model instances for the answer", ("_loaded (payments/services/create_path_sql",)),
    ("log lines (JSON, redacted)", ("Logger.",)),
]
GUNICORN = "gunicorn: HTTP parsing, threads, event loop"


def part_of(frames: list[str]) -> str:
    found = GUNICORN
    for frame in frames:
        for part, prefixes in PARTS:
            if frame.startswith(prefixes):
                found = part
    return found


def shares(raw_files: list[Path]) -> tuple[Counter[str], int]:
    """Samples per part from py-spy's raw output (`frame;frame;... count` per line)."""
    counts: Counter[str] = Counter()
    for path in raw_files:
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if stack and n.isdigit():
                counts[part_of(stack.split(";"))] += int(n)
    return counts, sum(counts.values())


def worker_times(master: int) -> tuple[list[int], float, float]:
    """The master's worker pids and their user and system CPU seconds so far."""
    pids = [int(p) for p in subprocess.check_output(["pgrep", "-P", str(master)]).split()]
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]) / ticks, system + int(fields[12]) / ticks
    return pids, user, system


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=f"{BIN}:{os.environ.get('PATH', '')}")
    if not (spy and shutil.which("wrk")):
        print("needs py-spy (requirements-dev.txt) and wrk (apt-get install -y wrk)", file=sys.stderr)
        return 2
    api_key = common.script_api_key(args.database)
    body = json.dumps({"amount": 1500, "currency": "usd", "payment_method": "pm_card_visa"})
    run_id = common.new_run_id()
    cpu: dict[str, tuple[float, float, float]] = {}  # app -> (user ms, system ms, payments/s)
    with load.fleet_for(args.database, workers=2, threads=args.threads) as fleet, \
            tempfile.TemporaryDirectory() as tmp:
        urls = {"ours": fleet.base_url, **load.start_baselines(fleet, workers=2, threads=args.threads)}
        script = Path(tmp) / "pay.lua"
        script.write_text(load.WRK_SCRIPT)
        raws: list[Path] = []
        for app in ("ours", "recorded"):
            master = fleet.procs["web1" if app == "ours" else app].pid
            key = api_key if app == "ours" else ""
            load.drive(urls[app], clients=args.clients, seconds=3, tag=f"{run_id}-warm-{app}", api_key=key,
                       body=body, script=script, server_pid=master)
            pids, user, system = worker_times(master)
            spies = []
            if app == "ours":
                raws = [Path(tmp) / f"{pid}.txt" for pid in pids]
                spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
                                           "--nonblocking", "--gil", "-d", str(round(args.seconds)), "-o", str(raw)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for pid, raw in zip(pids, raws, strict=False)]
            level = load.drive(urls[app], clients=args.clients, seconds=args.seconds, tag=f"{run_id}-{app}",
                               api_key=key, body=body, script=script, server_pid=master)
            for proc in spies:
                proc.wait(timeout=60)
            _, user_after, system_after = worker_times(master)
            n = max(1, level.requests)
            cpu[app] = ((user_after - user) * 1000 / n, (system_after - system) * 1000 / n, level.rps)
            print(f"  {app}: {level.rps:.0f}/s, {level.statuses}", flush=True)
        counts, total = shares(raws)
    ours_user, ours_system, ours_rps = cpu["ours"]
    rec_user, rec_system, rec_rps = cpu["recorded"]
    lines = [
        f"2 gunicorn workers × {args.threads} threads, {args.clients} clients for {args.seconds:g} s each "
        f"(ours, then the recorded floor); py-spy at {RATE} samples/s per worker, {total} samples of ours "
        "holding the GIL.",
        "",
        "| | payments/s | user CPU ms/payment | system CPU ms/payment |",
        "|---|---:|---:|---:|",
        f"| ours (its gunicorn workers) | {ours_rps:.0f} | {ours_user:.2f} | {ours_system:.2f} |",
        f"| recorded floor (its gunicorn workers) | {rec_rps:.0f} | {rec_user:.2f} | {rec_system:.2f} |",
        "",
        "| part of ours' request | share of samples | ≈ ms of user CPU per payment |",
        "|---|---:|---:|",
    ]
    for part, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {part} | {100 * n / max(1, total):.1f} % | {ours_user * n / max(1, total):.3f} |")
    return common.script_finish(TITLE, "\n".join(lines), ok=bool(total), write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
