#!/usr/bin/env python
"""Every fault kind of the sandbox against the whole service: does every payment end in the
gateway's truth?

One loopback fleet (gunicorn web from the Procfile, a real Celery worker, the sandbox's
gateway behind its fault proxy) on a database of its own. For each row — a no-fault
baseline, the declining card, a payment method the gateway does not hold, then every kind in
sandbox/faults.py `KINDS` — N clients start one payment each at the same moment over real
HTTP while the fault is armed on /v1/payment_intents. Each client retries with its own Idempotency-Key on 503/202/409 (and
on no answer), honouring Retry-After, for a bounded time. Then the fault is cleared, the
fleet settles what is unsettled, and each payment is compared with the gateway's intents
found by their metadata `payment_id`. Two passes by default: with the fault on half the
gateway requests (the clients' retries get through while it lasts) and on every one (the
clients give up with 202/503 in hand, and only settlement after the fault can end them).

Must hold for every row (the exit status is 1 otherwise, naming the row and the figure):
no answer 500; no payment `failed` (or `pending`, or unknown to us) that the gateway
charged; no payment with more than one intent; none left `unknown`/`processing` after
settlement; our succeeded total equal to the gateway's succeeded total for these payments.

    .venv/bin/python bench/fault_matrix.py [--kinds slow,unauthorized] [--payments 20]
        [--probabilities 0.5,1] [--delay-ms 1500] [--database payops_fleet_matrix] [--redis-db 9]
        [--fast] [--no-write]
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from bench.fleet import common  # noqa: E402
from bench.fleet.common import Fleet, Hit, Load  # noqa: E402
from sandbox.faults import KINDS  # noqa: E402

TITLE = "Every fault kind: the gateway's truth"
BASELINE, DECLINE, NO_SUCH_METHOD = "none", "card_declined", "no_such_payment_method"
GATEWAY_ANSWER_ROWS = {DECLINE: "pm_card_chargeCustomerFail", NO_SUCH_METHOD: "pm_card_does_not_exist"}
# The order: the delays, then the broken connections and answers, then refusals.
FAULT_ORDER = ["latency", "latency_before", "slow", "reset_before", "reset_after", "lose_answer", "truncate",
               "malformed", "http_500", "http_502", "http_503", "rate_limit", "refuse", "unauthorized",
               "forbidden", "http_400"]
ROWS = [BASELINE, DECLINE, NO_SUCH_METHOD, *FAULT_ORDER, *sorted(KINDS - set(FAULT_ORDER))]  # a new kind is never left out
DELAY_KINDS = {"latency", "latency_before", "slow"}
PATH = "/v1/payment_intents"  # creates and the settlement's retrieves alike
CARD_OK = "pm_card_visa"
RETRY_ON = {0, 202, 409, 503}  # 0: no answer at all; a careful client re-sends that too
# The test settings' short timeouts, spelled out so an operator's environment cannot
# lengthen them: a gateway call reads for 1 s within a 4 s deadline, settlement asks after 1, 1, 2 s.
SERVICE_ENV = {
    "PAYMENT_TIMEOUT": "1000", "PAYMENT_CONNECT_TIMEOUT": "500", "PAYMENT_RETRY_DELAY": "50",
    "PAYMENT_DEADLINE": "4000", "PAYMENT_SETTLE_DELAYS": "1,1,2", "BREAKER_OPEN_MS": "1000",
    "PAYMENT_SLOW_CALL_MS": "900",
    # 2 web workers × 8 threads take 16 payments at once; each thread may hold a connection.
    "DB_MAX_CONNECTIONS": "8",
}
READ_TIMEOUT_MS = int(SERVICE_ENV["PAYMENT_TIMEOUT"])


@dataclass
class Options:
    payments: int = 20
    probability: float = 0.5  # each gateway request of the row meets the fault with this chance
    delay_ms: int = 1500  # latency/latency_before/slow: above the 1 s read timeout, within the deadline
    refuse_ms: int = 1500  # `refuse`: how long the proxy's port stays closed
    client_budget: float = 10.0  # s a client keeps retrying one payment
    settle_timeout: float = 40.0  # s the fleet gets to settle the row after the fault is cleared


@dataclass
class PaymentRun:
    """One client's payment: every answer it got, in order."""

    key: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def first(self) -> Hit:
        return self.hits[0]

    @property
    def last(self) -> Hit:
        return self.hits[-1]


@dataclass
class Row:
    kind: str
    runs: list[PaymentRun]
    ledger: dict[str, Any]
    unsettled: list[str]
    seconds: float
    fired: int

    def first_statuses(self) -> dict[int, int]:
        return common.status_counts([r.first for r in self.runs])

    def final_statuses(self) -> dict[int, int]:
        return common.status_counts([r.last for r in self.runs])

    def answers_500(self) -> int:
        """Answers in the 5xx range other than 503 (which is the contract's 'retry later')."""
        return sum(1 for r in self.runs for h in r.hits if h.status >= 500 and h.status != 503)

    def codes(self) -> dict[str, int]:
        """Error codes of every non-2xx answer (503 gateway_unavailable, circuit_open, ...)."""
        return dict(sorted(Counter(f"{h.status}/{h.code or '-'}" for r in self.runs for h in r.hits
                                   if h.status >= 300 or h.status == 0).items()))

    def first_answer_ms(self, q: float) -> int:
        return round(common.pct([r.first.elapsed for r in self.runs], q) * 1000)

    def violations(self) -> dict[str, Any]:
        """Each 'must be 0' / 'must be equal' figure that is not, with what shows it."""
        ledger = self.ledger
        found: dict[str, Any] = {}
        if self.answers_500():
            found["answers 500"] = [(r.key[:8], [h.status for h in r.hits]) for r in self.runs
                                    if any(h.status >= 500 and h.status != 503 for h in r.hits)]
        for name, ids in (("failed but charged", ledger["failed_charged"]),
                          ("pending but charged", ledger["pending_charged"]),
                          ("charged for a payment we do not have", ledger["orphans"]),
                          ("succeeded on another intent than the gateway's", ledger.get("succeeded_mismatch_detail") or ledger["succeeded_mismatch"]),
                          ("duplicate charges", ledger["duplicates"]),
                          ("answered but not stored", ledger["answered_missing"]),
                          ("left unknown/processing", ledger["unsettled"])):
            if ids:
                found[name] = ids
        if ledger["ledger_total"] != ledger["gateway_total"]:
            found["ledger total != gateway total"] = (ledger["ledger_total"], ledger["gateway_total"])
        return found


# --- one payment, one client ----------------------------------------------------------------
def _wait_before_retry(hit: Hit) -> float:
    """Retry-After when the service gave one (capped: a client's patience is bounded too);
    otherwise a short pause, as a 202/409 asks only for 'shortly'."""
    try:
        return min(5.0, max(0.2, float(hit.retry_after or "")))
    except ValueError:
        return 0.5


def pay_until_final(*, base_url: str, api_key: str, run_id: str, amount: int, payment_method: str,
                    budget: float, load: Load) -> PaymentRun:
    """One payment, re-sent with the same Idempotency-Key and body while the answer asks for
    it (503/202/409, or none) and `budget` seconds last."""
    run = PaymentRun(key=common.new_key())
    body = {"amount": amount, "currency": "usd", "payment_method": payment_method,
            "metadata": {"fleet_run": run_id}}
    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": run.key}
    give_up_at = time.monotonic() + budget
    with requests.Session() as session:
        while True:
            hit = common.call(session, load, "pay", "POST", f"{base_url}/api/v1/payments", idem=run.key,
                              json=body, headers=headers, timeout=30.0)
            run.hits.append(hit)
            if hit.status not in RETRY_ON:
                return run
            pause = _wait_before_retry(hit)
            if time.monotonic() + pause > give_up_at:
                return run
            time.sleep(pause)


def drive(fleet: Fleet, *, api_key: str, run_id: str, payments: int, payment_method: str,
          budget: float) -> list[PaymentRun]:
    """`payments` clients, released together by a barrier, one payment each, spread over the
    fleet's web servers; every client's answers."""
    load = Load()
    runs: list[PaymentRun | None] = [None] * payments
    gate = threading.Barrier(payments)

    def client(i: int) -> None:
        gate.wait()
        runs[i] = pay_until_final(base_url=fleet.base_urls[i % len(fleet.base_urls)], api_key=api_key,
                                  run_id=run_id, amount=1000 + i, payment_method=payment_method,
                                  budget=budget, load=load)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(payments)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(budget + 60)
    return [r for r in runs if r is not None]


# --- one row of the matrix --------------------------------------------------------------------
def arm(fleet: Fleet, kind: str, opts: Options) -> None:
    """Arm the row's fault on the proxy (nothing for the baseline and the rows of gateway answers)."""
    if kind == BASELINE or kind in GATEWAY_ANSWER_ROWS:
        return
    if kind == "refuse":
        # Time-based by nature: the port is closed for a while, no per-request dice.
        fleet.sandbox.fault("refuse", duration_ms=opts.refuse_ms)
        return
    rule: dict[str, Any] = {"probability": opts.probability, "path_prefix": PATH, "retry_after": 1}
    if kind in DELAY_KINDS:
        rule["delay_ms"] = opts.delay_ms
    fleet.sandbox.fault(kind, **rule)


def _fired(fleet: Fleet, kind: str) -> int:
    return int((fleet.sandbox.stats().get("faults_applied") or {}).get(kind, 0))


def breaker_reset(fleet: Fleet) -> None:
    """Close the fleet's shared gateway breaker, as an operator's reset does: a row that left it
    open (the gateway refused our key for the whole row) must not answer the next row's first
    payments with `circuit_open`. Recovering by itself is what bench/fleet/gateway_outage.py measures."""
    fleet.breaker().reset()


def run_kind(fleet: Fleet, *, api_key: str, kind: str, opts: Options) -> Row:
    """Drive one row: arm, pay concurrently, clear, let the fleet settle, compare with the gateway."""
    run_id = common.new_run_id()
    breaker_reset(fleet)
    started = time.monotonic()
    fired_before = _fired(fleet, kind)
    arm(fleet, kind, opts)
    try:
        runs = drive(fleet, api_key=api_key, run_id=run_id, payments=opts.payments,
                     payment_method=GATEWAY_ANSWER_ROWS.get(kind, CARD_OK), budget=opts.client_budget)
    finally:
        if kind != "refuse":  # a refuse window ends by itself; its rule is never listed
            fleet.sandbox.clear()
    fired = _fired(fleet, kind) - fired_before
    unsettled = common.settle_all(fleet, run_id, timeout=opts.settle_timeout)
    ledger = common.ledger_check(fleet.sandbox, run_id, [h for r in runs for h in r.hits])
    return Row(kind=kind, runs=runs, ledger=ledger, unsettled=unsettled, seconds=time.monotonic() - started,
               fired=fired)


def progress_line(row: Row) -> str:
    statuses = row.ledger["statuses"]
    bad = row.violations()
    return (f"  {row.kind:<14} {row.seconds:5.1f} s  fired {row.fired:<3} first {row.first_statuses()} "
            f"final {row.final_statuses()} payments {statuses}  {'OK' if not bad else 'VIOLATED: ' + ', '.join(bad)}")


def run_matrix(fleet: Fleet, *, api_key: str, kinds: list[str], opts: Options,
               progress: Callable[[str], None] = print) -> list[Row]:
    """Every row in `kinds`, one after the other on the same fleet; a progress line per row."""
    # Warm-up, not measured: each web thread's first payment opens its database and gateway
    # connections, which would otherwise be charged to the first row's latencies.
    drive(fleet, api_key=api_key, run_id=common.new_run_id(), payments=opts.payments, payment_method=CARD_OK,
          budget=opts.client_budget)
    rows = []
    for n, kind in enumerate(kinds, 1):
        progress(f"[{n}/{len(kinds)}] {kind}: {opts.payments} concurrent payments ...")
        row = run_kind(fleet, api_key=api_key, kind=kind, opts=opts)
        progress(progress_line(row))
        rows.append(row)
    return rows


def fleet_for(database: str, *, redis_db: int = common.SCRIPT_REDIS_DB, log_dir: Path | None = None,
              fast: bool = False) -> Fleet:
    """The Procfile's web (2 gunicorn workers × 8 threads) and worker, in front of real
    localstripe unless `fast` (the proxy answers intents itself)."""
    return Fleet(database=database, redis_db=redis_db, web_workers=2, threads=8, celery_workers=1,
                 celery_concurrency=4, fast=fast, log_dir=log_dir, **SERVICE_ENV)


# --- figures --------------------------------------------------------------------------------
def _statuses(counts: dict[Any, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in counts.items()) or "-"


def table(rows: list[Row]) -> str:
    head = ("| fault | fired | first answers | final answers | payments after settlement | 500s "
            "| failed & charged | duplicates | unknown/processing | ours / gateway's (succeeded, minor units) "
            "| first answer p50 / p99 ms | error answers (all tries) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        ledger = row.ledger
        total = f"{ledger['ledger_total']} / {ledger['gateway_total']}"
        if ledger["ledger_total"] != ledger["gateway_total"]:
            total = f"**{total}**"
        lines.append(
            f"| {row.kind} | {row.fired if row.kind not in (BASELINE, 'refuse', *GATEWAY_ANSWER_ROWS) else '-'} "
            f"| {_statuses(row.first_statuses())} | {_statuses(row.final_statuses())} "
            f"| {_statuses(ledger['statuses'])} | {row.answers_500()} | {len(ledger['failed_charged'])} "
            f"| {len(ledger['duplicates'])} | {len(ledger['unsettled'])} | {total} "
            f"| {row.first_answer_ms(50)} / {row.first_answer_ms(99)} | {_statuses(row.codes())} |")
    return "\n".join(lines)


def violations(rows: list[Row]) -> dict[str, dict[str, Any]]:
    return {row.kind: bad for row in rows if (bad := row.violations())}


@dataclass
class Pass:
    """The whole matrix at one fault probability."""

    opts: Options
    rows: list[Row]
    seconds: float


def setup_text(opts: Options, *, fast: bool) -> str:
    gateway = "the proxy's fast mode" if fast else "localstripe"
    return (
        f"For each row, {opts.payments} clients start one payment each at the same moment against gunicorn "
        "(2 workers × 8 threads) with its Celery worker; the sandbox proxy in front of "
        f"{gateway} applies the row's fault to requests on {PATH} (creates and retrieves) "
        f"(`refuse`: the port closed for {opts.refuse_ms} ms; `latency`, `latency_before`, `slow`: "
        f"{opts.delay_ms} ms, above the {READ_TIMEOUT_MS} ms read timeout). Service settings: "
        + ", ".join(f"{k}={v}" for k, v in SERVICE_ENV.items()) + ". "
        f"Each client re-sends with its Idempotency-Key on 503/202/409 (Retry-After honoured, for at most "
        f"{opts.client_budget:.0f} s); then the fault is cleared, the fleet settles (the sweep sent every 5 s, "
        f"at most {opts.settle_timeout:.0f} s) and every payment is compared with the gateway's intents found "
        "by metadata `payment_id`. The shared breaker is reset before each row. `fired`: gateway requests the "
        "fault hit; answers are our API's HTTP statuses (0: no answer); amounts in minor units. A `pending` "
        "payment never reached the gateway (its client holds a 503 and gave up after its patience): it is "
        "final for no one, and checked like the others — the gateway must hold no charge for it.")


def pass_text(p: Pass) -> str:
    return "\n".join([
        f"### Fault probability {p.opts.probability:g} ({p.seconds:.0f} s)", "", table(p.rows), ""])


def verdict_text(passes: list[Pass]) -> list[str]:
    bad = {(p.opts.probability, kind): found for p in passes for kind, found in violations(p.rows).items()}
    lines = ["Invariants (0 answers 500; 0 payments failed, pending or unknown to us that the gateway charged; "
             "0 duplicate charges; 0 unknown/processing after settlement; our succeeded total = the gateway's): "
             f"{'held in every row' if not bad else '**violated**'}."]
    lines += [f"- **{kind}** at probability {prob:g}: {found}" for (prob, kind), found in bad.items()]
    return lines


def report(passes: list[Pass], *, seconds: float, fast: bool) -> str:
    lines = [setup_text(passes[0].opts, fast=fast), ""]
    for p in passes:
        lines.append(pass_text(p))
    lines.append(f"Whole run, fleet start included: {seconds:.0f} s.")
    lines += ["", *verdict_text(passes)]
    return "\n".join(lines)


def parse_kinds(raw: str) -> list[str]:
    kinds = [k.strip() for k in raw.split(",") if k.strip()] if raw else list(ROWS)
    unknown = [k for k in kinds if k not in ROWS]
    if unknown:
        raise SystemExit(f"unknown kind(s) {unknown}; choose from {', '.join(ROWS)}")
    return kinds


def parse_probabilities(raw: str) -> list[float]:
    values = [float(v) for v in raw.split(",") if v.strip()]
    if not values or not all(0 < v <= 1 for v in values):
        raise SystemExit("--probabilities: numbers in (0, 1], comma-separated")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = common.script_parser(__doc__)
    parser.set_defaults(database="payops_fleet_matrix")
    common.add_redis_db_option(parser)
    parser.add_argument("--kinds", default="", help=f"comma-separated rows (default all: {','.join(ROWS)})")
    parser.add_argument("--payments", type=int, default=Options.payments)
    parser.add_argument("--probabilities", default="0.5,1",
                        help="one pass of the matrix per fault probability (default 0.5,1)")
    parser.add_argument("--delay-ms", type=int, default=Options.delay_ms)
    parser.add_argument("--fast", action="store_true", help="the proxy answers intents itself (no localstripe)")
    args = parser.parse_args(argv)
    kinds = parse_kinds(args.kinds)
    all_opts = [Options(payments=args.payments, probability=p, delay_ms=args.delay_ms)
                for p in parse_probabilities(args.probabilities)]
    started = time.monotonic()
    print(f"fault matrix: {len(kinds)} rows × {args.payments} payments at probabilities "
          f"{', '.join(f'{o.probability:g}' for o in all_opts)}; database {args.database}", flush=True)
    api_key = common.script_api_key(args.database, args.redis_db)
    passes = []
    with fleet_for(args.database, redis_db=args.redis_db, fast=args.fast) as fleet:
        for opts in all_opts:
            print(f"probability {opts.probability:g}:", flush=True)
            pass_started = time.monotonic()
            rows = run_matrix(fleet, api_key=api_key, kinds=kinds, opts=opts,
                              progress=lambda line: print(line, flush=True))
            passes.append(Pass(opts, rows, time.monotonic() - pass_started))
    text = report(passes, seconds=time.monotonic() - started, fast=args.fast)
    ok = not any(violations(p.rows) for p in passes)
    code = common.script_finish(TITLE, text, ok=ok, write=not args.no_write)
    for p in passes:
        for kind, found in violations(p.rows).items():
            print(f"VIOLATED: {kind} at probability {p.opts.probability:g}: {found}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
