#!/usr/bin/env python
"""Scenario 3, gateway outage and flapping under load: two gunicorn servers (one worker
each) share the breaker through Redis; the sandbox's fault proxy answers every
/v1/payment_intents call with http_503 (or refuses connections) for a while, clears, and
does it again (flapping).

Holds: no 500 and no connection error; the breaker opens fleet-wide (both servers answer
503 `circuit_open` with Retry-After, fast); while it is open the gateway sees only the
half-open probes (each probe is one payment, i.e. at most PAYMENT_RETRY_ATTEMPTS requests);
no payment answered 503 was charged; once the fault clears, 201s come back by themselves;
the gateway/circuit_open alert was raised during the outage and is resolved at the end.

    .venv/bin/python bench/fleet/gateway_outage.py [--seconds 50] [--outage 12] [--flaps 2] [--kind http_503]
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Hit, Load, Payer  # noqa: E402
from bench.fleet.pool_pressure import Result  # noqa: E402

TITLE = "3. Gateway outage and flapping"
AMOUNT = 1700
OPEN_MS = 2000
RETRY_ATTEMPTS = 3  # the fleet's PAYMENT_RETRY_ATTEMPTS (the default)
MIN_CALLS, WINDOW_S = 5, 4
SETTLE_S = 1.0  # a short window: the successes before the outage leave it quickly


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None) -> Fleet:
    return Fleet(database=database, redis_db=redis_db, web_masters=2, web_workers=1, threads=4, celery_workers=1,
                 log_dir=log_dir, BREAKER_OPEN_MS=str(OPEN_MS), BREAKER_MINIMUM_CALLS=str(MIN_CALLS), BREAKER_WINDOW=str(WINDOW_S),
                 PAYMENT_RETRY_ATTEMPTS=str(RETRY_ATTEMPTS))


def _alerts_since(since: float) -> list[dict[str, Any]]:
    import datetime as dt

    from django.db import connections

    from health.models import Alert

    start = dt.datetime.fromtimestamp(since, dt.UTC)
    rows = list(Alert.objects.filter(component="gateway", condition="circuit_open", last_seen__gte=start)
                .values("id", "status", "severity", "occurrences", "reopened", "first_seen", "resolved_at",
                        "message"))
    connections.close_all()
    return rows


def run(fleet: Fleet, *, api_key: str, run_id: str, clients: int, seconds: float, first_at: float, outage: float,
        flaps: int, gap: float, kind: str = "http_503", pause: float = 0.05) -> Result:
    payer = Payer(fleet.base_urls, api_key, run_id)
    load = Load()
    by_server: list[tuple[int, Hit]] = []
    lock = threading.Lock()
    windows: list[dict[str, Any]] = []
    wall0 = time.time()

    def work(session, load: Load, i: int, running) -> None:  # type: ignore[no-untyped-def]
        n = i
        while running():
            n += 1
            hit = payer.pay_once(session, load, common.new_key(), AMOUNT, n)
            with lock:
                by_server.append((n % len(fleet.base_urls), hit))
            time.sleep(pause)

    def rel() -> float:
        return time.monotonic() - load.t0

    def driver() -> None:
        time.sleep(first_at)
        for k in range(flaps):
            w: dict[str, Any] = {"on": rel(), "requests_on": fleet.sandbox.stats()["requests"]}
            if kind == "refuse":
                fleet.sandbox.fault("refuse", duration_ms=int(outage * 1000))
            else:
                fleet.sandbox.fault(kind, path_prefix="/v1/payment_intents", retry_after=0)
            end = time.monotonic() + outage
            while time.monotonic() < end:
                state = fleet.breaker_state()
                if "opened_seen" not in w and state.get("state") == "open":
                    w["opened_seen"] = rel()
                # Calls already in flight when it opened finish their retries within a second.
                if "opened_seen" in w and "requests_opened" not in w and rel() >= w["opened_seen"] + SETTLE_S:
                    w["counted_from"] = rel()
                    w["requests_opened"] = fleet.sandbox.stats()["requests"]
                time.sleep(0.1)
            w["requests_off"] = fleet.sandbox.stats()["requests"]
            if kind != "refuse":
                fleet.sandbox.clear()
            w["off"] = rel()
            windows.append(w)
            if k < flaps - 1:
                time.sleep(gap)

    threading.Thread(target=driver, daemon=True).start()
    common.run_clients(clients, seconds, work, load)
    hits = load.hits

    # Per outage: first circuit_open on each server, gateway requests while open, recovery.
    per_window = []
    open_ok, probes_ok, both_ok, recovered_ok = True, True, True, True
    for w in windows:
        on, off = w["on"], w["off"]
        first_open = {}
        for server, h in by_server:
            if on <= h.started < off and h.status == 503 and h.code == "circuit_open":
                first_open[server] = min(first_open.get(server, math.inf), h.started + h.elapsed)
        opened_in = (max(first_open.values()) - on) if len(first_open) == len(fleet.base_urls) else None
        both_ok &= opened_in is not None
        open_from = w.get("counted_from")
        open_ok &= open_from is not None
        forwarded = None if open_from is None else w["requests_off"] - w["requests_opened"]
        sent_while_open = sum(1 for h in hits if open_from is not None and open_from <= h.started < off)
        # One half-open probe per OPEN_MS at most (one payment: up to RETRY_ATTEMPTS requests).
        allowed = (math.ceil((off - (open_from or off)) / (OPEN_MS / 1000)) + 1) * RETRY_ATTEMPTS
        probes_ok &= forwarded is not None and forwarded <= allowed
        first_ok = min((h.started + h.elapsed for h in hits if h.started >= off and h.status == 201), default=None)
        recovered = None if first_ok is None else first_ok - off
        recovered_ok &= recovered is not None and recovered <= OPEN_MS / 1000 + 5
        per_window.append({
            "fault_s": f"{on:.1f}-{off:.1f}", "open_in_redis_after_s": None if "opened_seen" not in w
            else round(w["opened_seen"] - on, 2), "both_servers_circuit_open_after_s": None if opened_in is None
            else round(opened_in, 2), "payments_sent_while_open_from_1s": sent_while_open,
            "gateway_requests_while_open": forwarded, "allowed_probe_requests": allowed,
            "first_201_after_clear_s": None if recovered is None else round(recovered, 2),
        })

    last_off = windows[-1]["off"] if windows else 0.0
    first_ok_last = min((h.started + h.elapsed for h in hits if h.started >= last_off and h.status == 201),
                        default=None)
    stream = [h for h in hits if first_ok_last is not None and h.started > first_ok_last + OPEN_MS / 1000 + 1]
    circuit = [h for h in hits if h.status == 503 and h.code == "circuit_open"]
    five03 = [h for h in hits if h.status == 503]

    # Let the fleet settle anything unknown, then the breaker alert must be resolved.
    left = common.settle_all(fleet, run_id, timeout=40.0)
    alerts: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alerts = _alerts_since(wall0)
        if alerts and all(a["status"] == "resolved" for a in alerts):
            break
        time.sleep(0.5)
    ledger = common.ledger_check(fleet.sandbox, run_id, hits)
    r = Result()
    r.figures = {
        "clients": clients, "seconds": seconds, "kind": kind, "outage_s": outage, "flaps": flaps, "gap_s": gap,
        "requests": len(hits), "by_status": common.status_counts(hits),
        "codes_503": sorted({h.code for h in five03}),
        "circuit_open_p50_p99_ms": (round(common.pct([h.elapsed for h in circuit], 50) * 1000),
                                    round(common.pct([h.elapsed for h in circuit], 99) * 1000)) if circuit else None,
        "windows": per_window, "after_recovery": common.status_counts(stream),
        "alerts": [{k: (str(v) if k in ("first_seen", "resolved_at") else v) for k, v in a.items()}
                   for a in alerts],
        "left_unsettled": len(left), "ledger": {k: (len(v) if isinstance(v, list) else v) for k, v in ledger.items()},
        "sandbox": fleet.sandbox.stats().get("faults_applied"),
    }
    r.checks = {
        "no 500": not any(h.status >= 500 and h.status != 503 for h in hits),
        "no connection errors": not any(h.status == 0 for h in hits),
        "breaker opens fleet-wide in every outage (both servers answer circuit_open)": both_ok and open_ok,
        "every 503 has Retry-After": all((h.retry_after or "").isdigit() for h in five03),
        "circuit_open answers are fast (p99 < 500 ms)": bool(circuit)
        and common.pct([h.elapsed for h in circuit], 99) < 0.5,
        "gateway sees only half-open probes while open": probes_ok,
        "201s again after the fault clears, without manual action": recovered_ok,
        "all 201 once recovered": bool(stream) and all(h.status == 201 for h in stream),
        "gateway/circuit_open alert raised": bool(alerts),
        "alert resolved at the end": bool(alerts) and all(a["status"] == "resolved" for a in alerts),
        "no charge for 503s, ledger = gateway": common.ledger_ok(ledger),
    }
    return r


def report(r: Result) -> str:
    f = r.figures
    lines = [
        f"{f['clients']} clients create payments for {f['seconds']} s against 2 gunicorn servers (1 worker each, "
        f"sharing the breaker through Redis; BREAKER_OPEN_MS={OPEN_MS}, minimum {MIN_CALLS} calls in {WINDOW_S} s, "
        f"PAYMENT_RETRY_ATTEMPTS={RETRY_ATTEMPTS}). The sandbox proxy answers `{f['kind']}` to every "
        f"/v1/payment_intents call for {f['outage_s']} s, {f['flaps']} times {f['gap_s']} s apart (flapping).",
        "", "| figure | value |", "|---|---|",
        f"| requests | {f['requests']} |", f"| by status | {f['by_status']} |",
        f"| 503 codes | {', '.join(f['codes_503']) or '-'} |",
        f"| circuit_open latency p50 / p99 | {f['circuit_open_p50_p99_ms']} ms |",
        *[f"| outage {n + 1} | {w} |" for n, w in enumerate(f["windows"])],
        f"| after recovery (from open time + 1 s past the first 201), by status | {f['after_recovery']} |",
        f"| gateway/circuit_open alerts | {f['alerts']} |",
        f"| still unsettled at the end | {f['left_unsettled']} |",
        f"| ledger | {f['ledger']} |", f"| sandbox faults applied | {f['sandbox']} |",
        *common.verdict_lines(r.checks),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=50)
    parser.add_argument("--first-at", type=float, default=6)
    parser.add_argument("--outage", type=float, default=12)
    parser.add_argument("--flaps", type=int, default=2)
    parser.add_argument("--gap", type=float, default=10)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--kind", default="http_503", choices=["http_503", "refuse"])
    args = parser.parse_args(argv)
    api_key = common.script_api_key(args.database)
    with fleet_for(args.database) as fleet:
        result = run(fleet, api_key=api_key, run_id=common.new_run_id(), clients=args.clients, seconds=args.seconds,
                     first_at=args.first_at, outage=args.outage, flaps=args.flaps, gap=args.gap, kind=args.kind)
    return common.script_finish(TITLE, report(result), ok=result.ok, write=not args.no_write)


if __name__ == "__main__":
    sys.exit(main())
