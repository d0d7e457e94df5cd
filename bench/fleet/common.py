"""A whole Payment Ops fleet on loopback, for the fault drills in bench/fleet/ and tests/fleet/.

    with Fleet(database="payops_fleet", web_workers=2, celery_workers=1) as fleet:
        fleet.base_url            # gunicorn (N workers, gthread)
        fleet.pg_proxy.cut()      # PostgreSQL "goes away" for every fleet process...
        fleet.pg_proxy.restore()  # ...and comes back on the same port
        fleet.redis_proxy.cut()
        fleet.sandbox.fault("http_503")

Every process talks to PostgreSQL and Redis through a TcpProxy of its own (the machine's real
servers are never stopped: other people use them), to the gateway through the sandbox's
fault proxy, and uses its own database (`prepare_database`, or the pytest test database) and
its own Redis database number. Nothing here imports pytest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench.docs import cpu_model, replace_section  # noqa: E402
from sandbox.harness import SandboxStack  # noqa: E402
from tests.support.processes import wait_http  # noqa: E402
from tests.support.tcpproxy import TcpProxy  # noqa: E402

BIN = Path(sys.executable).parent
PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
PG_USER = "postgres"
SCRIPT_REDIS_DB = 9  # the scripts' own Redis database number (the suite uses others)
RELIABILITY_DOC = REPO / "docs" / "reliability.md"
GATEWAY_KEY = "sk_test_fleet"


# --- database ------------------------------------------------------------------------------
def prepare_database(name: str) -> None:
    """Drop and create `name` (only a database whose name says it is ours), then migrate it."""
    # payops_[<who>_]fleet* or payops_x*: each engineer's runs on a shared machine keep to their own names.
    if not re.fullmatch(r"(test_)?payops_(([a-z]+_)?fleet|x)\w*", name):
        raise ValueError(f"refusing to recreate {name!r}: fleet databases are named payops_[<who>_]fleet* or payops_x*")
    host, port = PG
    args = ["-h", host, "-p", str(port), "-U", PG_USER]
    subprocess.run(["dropdb", *args, "--if-exists", "--force", name], check=True, capture_output=True)
    subprocess.run(["createdb", *args, name], check=True, capture_output=True)
    env = child_env(database_url=f"postgres://{PG_USER}@{host}:{port}/{name}",
                    redis_url=f"redis://{REDIS[0]}:{REDIS[1]}/{SCRIPT_REDIS_DB}", gateway_url="http://127.0.0.1:9")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env={**env, "PROCESS_ROLE": "release"},
                   check=True, capture_output=True)


def setup_django_for_script(database: str, redis_db: int = SCRIPT_REDIS_DB) -> None:
    """Point this (script) process's Django at the fleet database and Redis, directly."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": f"postgres://{PG_USER}@{PG[0]}:{PG[1]}/{database}",
        "REDIS_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
        "PROCESS_ROLE": "fleetbench",
        "DB_MIN_CONNECTIONS": "0",
        "DB_MAX_CONNECTIONS": "4",
        "LOG_LEVEL": "WARNING",
        "HEALTH_PUBLISH_INTERVAL": "0",
    })
    import django

    django.setup()


def pg_connections(database: str) -> dict[str, int]:
    """Server-side truth: backends on `database` by application_name (a direct connection)."""
    import psycopg

    with psycopg.connect(host=PG[0], port=PG[1], user=PG_USER, dbname="postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND application_name LIKE 'payops-%%' GROUP BY 1", [database]).fetchall()
    return {name: count for name, count in rows}


def pg_backends(database: str) -> list[tuple]:
    """(pid, application_name, state, query start, query) of the fleet's backends, for diagnosis."""
    import psycopg

    with psycopg.connect(host=PG[0], port=PG[1], user=PG_USER, dbname="postgres", autocommit=True) as conn:
        return conn.execute(
            "SELECT pid, application_name, state, backend_start::text, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'payops-%%' ORDER BY 2, 4", [database]).fetchall()


# --- processes -----------------------------------------------------------------------------
def child_env(*, database_url: str, redis_url: str, gateway_url: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings_test",  # short timeouts, /_test/hold-db
        "DJANGO_READ_DOTENV": "false",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PAYMENT_GATEWAY_URL": gateway_url,
        "PAYMENT_GATEWAY_API_KEY": GATEWAY_KEY,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        # One client drives the load: the per-key rate limit is not what is measured here.
        "API_RATE_LIMIT": "100000",
        "API_RATE_BURST": "100000",
        "HEALTH_PUBLISH_INTERVAL": "1",
        "DB_MAX_CONNECTIONS": "5",
        "DB_MIN_CONNECTIONS": "1",
        "LOG_LEVEL": "WARNING",
    })
    env.update(overrides)
    return env


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fleet:
    """gunicorn (web_workers × threads), Celery worker(s), optional beat, the sandbox, and
    TCP proxies in front of PostgreSQL and Redis; every port a free loopback one."""

    def __init__(self, *, database: str, redis_db: int = SCRIPT_REDIS_DB, web_workers: int = 2,
                 threads: int = 8, web_masters: int = 1, celery_workers: int = 1, celery_concurrency: int = 4,
                 beat: bool = False, fast: bool = True, log_dir: Path | None = None, **env: str) -> None:
        self.database, self.redis_db = database, redis_db
        self.web_workers, self.threads, self.web_masters = web_workers, threads, web_masters
        self.celery_workers, self.celery_concurrency, self.beat = celery_workers, celery_concurrency, beat
        self.fast = fast
        self.log_dir = Path(log_dir or REPO / "var" / "fleet" / time.strftime("%Y%m%d-%H%M%S"))
        self.extra_env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.base_urls: list[str] = []
        self._i = 0

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self) -> Fleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pg_proxy = TcpProxy(PG).__enter__()
        self.redis_proxy = TcpProxy(REDIS).__enter__()
        self.sandbox = SandboxStack(fast=self.fast, log_dir=self.log_dir / "sandbox").start()
        self.redis_clean()
        self.env = child_env(
            database_url=f"postgres://{PG_USER}@127.0.0.1:{self.pg_proxy.port}/{self.database}",
            redis_url=f"redis://127.0.0.1:{self.redis_proxy.port}/{self.redis_db}",
            gateway_url=self.sandbox.proxy_url, **self.extra_env)
        for _ in range(self.web_masters):
            self.add_web()
        for _ in range(self.celery_workers):
            self.add_worker()
        if self.beat:
            self.add_beat()

    def stop(self) -> None:
        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is not None:
                # A process that died on its own says so at the end of its log, where a failed
                # drill's reader looks (the scenario tests print the logs' tails).
                self._log_line(name, f"exited with code {proc.returncode} before the fleet stopped")
            _stop(proc)
        self.procs.clear()
        if hasattr(self, "env"):
            # Tasks beat queued and pings left unrun must not reach the next run or test on this
            # Redis database.
            self.redis_clean()
        for attr in ("sandbox",):
            if hasattr(self, attr):
                getattr(self, attr).stop()
        for attr in ("pg_proxy", "redis_proxy"):
            if hasattr(self, attr):
                getattr(self, attr).cut()

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    def _log_line(self, name: str, text: str) -> None:
        with open(self.log_dir / f"{name}.log", "a") as log:
            log.write(f"[fleet {time.strftime('%H:%M:%S')}] {name} {text}\n")

    def _spawn(self, name: str, cmd: list[str], role: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, cwd=REPO, env={**self.env, "PROCESS_ROLE": role}, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        self.procs[name] = proc
        return proc

    def add_web(self) -> str:
        from tests.support.tcpproxy import _free_port

        port = _free_port()
        self._i += 1
        proc = self._spawn(f"web{self._i}", [
            str(BIN / "gunicorn"), "config.wsgi", "-c", str(REPO / "config/gunicorn.py"),
            "--bind", f"127.0.0.1:{port}", "--workers", str(self.web_workers), "--threads", str(self.threads),
        ], "web")
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/live", proc)
        self.base_urls.append(base)
        return base

    def add_worker(self, name: str | None = None) -> subprocess.Popen:
        self._i += 1
        name = name or f"worker{self._i}"
        return self._spawn(name, [
            str(BIN / "celery"), "-A", "config", "worker", "--pool=threads",
            f"--concurrency={self.celery_concurrency}", "--loglevel=WARNING", "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-n", f"fleet-{name}-{os.getpid()}@%h",
        ], "worker")

    def add_beat(self, name: str = "beat") -> subprocess.Popen:
        """A beat process; each name keeps its own schedule file, so two beats can run at once."""
        schedule = "celerybeat-schedule" if name == "beat" else f"celerybeat-schedule-{name}"
        return self._spawn(name, [
            str(BIN / "celery"), "-A", "config", "beat", "--loglevel=WARNING",
            "--schedule", str(self.log_dir / schedule),
        ], "beat")

    def kill_hard(self, name: str) -> float:
        """SIGKILL one fleet process (no shutdown, no requeue by the process itself); when it died."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return time.monotonic()

    # -- Redis (direct, not through the proxy) -----------------------------------------------
    # The caller reaches the fleet's broker and breaker through these, never through its own
    # Django settings: in the test suite those name the session's Redis, whose Celery worker
    # serves another gateway, and a settlement it took from the fleet would charge there.
    @property
    def redis_url(self) -> str:
        return f"redis://{REDIS[0]}:{REDIS[1]}/{self.redis_db}"

    def redis(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host=REDIS[0], port=REDIS[1], db=self.redis_db, socket_timeout=2)

    def send_task(self, name: str, **options: Any) -> Any:
        """Queues a task on the fleet's broker, as its beat or web would (Celery's send_task options)."""
        from config.celery import app

        with app.connection_for_write(self.redis_url) as connection:
            return app.send_task(name, connection=connection, **options)

    def task_succeeded(self, task_id: str) -> bool:
        """Whether the fleet's result backend holds a success for `task_id`."""
        raw = self.redis().get(f"celery-task-meta-{task_id}")
        return bool(raw) and json.loads(raw).get("status") == "SUCCESS"

    def breaker(self) -> Any:
        """The fleet's shared gateway breaker, seen from this process (one more member)."""
        from payments.gateway import build_breaker

        return build_breaker(redis_url=self.redis_url)

    def redis_clean(self) -> None:
        """Forget breaker, rate-limit and fleet keys and the task queue left by an earlier run."""
        client = self.redis()
        keys = list(client.scan_iter("payops:*", count=1000)) + [b"payops", b"unacked", b"unacked_index"]
        if keys:
            client.delete(*keys)

    def unacked_tasks(self) -> list[dict[str, Any]]:
        """Messages a worker took and has not acknowledged (kombu's `unacked` hash, which a worker
        killed with -9 leaves behind until the visibility timeout): task name, id, when taken."""
        client = self.redis()
        taken = {k.decode(): score for k, score in client.zrange("unacked_index", 0, -1, withscores=True)}
        tasks = []
        for tag, raw in client.hgetall("unacked").items():
            try:
                headers = json.loads(raw)[0].get("headers") or {}
            except (ValueError, AttributeError, IndexError):
                continue
            tasks.append({"task": headers.get("task"), "id": headers.get("id"), "tag": tag.decode(),
                          "taken_at": taken.get(tag.decode()), "headers": headers})
        return tasks

    def fleet_docs(self) -> list[dict[str, Any]]:
        client = self.redis()
        members = client.zrangebyscore("payops:fleet:index", time.time() - 3600, "+inf")
        raw = client.mget([f"payops:fleet:proc:{m.decode()}" for m in members]) if members else []
        return [json.loads(r) for r in raw if r]

    def breaker_state(self) -> dict[str, str]:
        client = self.redis()
        raw = client.hgetall("payops:breaker:{gateway}:state")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def own_pids(self) -> set[int]:
        """Pids of this fleet's processes and their children (gunicorn workers): other
        processes on the same Redis database would publish beside them."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                parents[int(stat.parent.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        own = {proc.pid for proc in self.procs.values()}
        grew = True
        while grew:
            children = {pid for pid, ppid in parents.items() if ppid in own} - own
            grew = bool(children)
            own |= children
        return own

    def own_docs(self) -> list[dict[str, Any]]:
        pids = self.own_pids()
        return [d for d in self.fleet_docs() if d.get("pid") in pids]

    def wait_publishers(self, *, web: int, worker: int, timeout: float = 30.0, since: float | None = None,
                        interval: float = 0.3) -> list[dict[str, Any]]:
        """Until `web` web and `worker` worker processes of this fleet publish (requests wake
        web publishers): documents of the last 5 s, or written after `since` (epoch s)."""
        deadline = time.monotonic() + timeout
        docs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for base in self.base_urls:
                try:
                    requests.get(f"{base}/health/live", timeout=2)
                except requests.RequestException:
                    pass
            docs = self.own_docs()
            roles = [d["role"] for d in docs if (d["at"] > since if since is not None else time.time() - d["at"] < 5)]
            if roles.count("web") >= web and roles.count("worker") >= worker:
                return docs
            time.sleep(interval)
        raise TimeoutError(f"publishers: wanted web={web} worker={worker}, saw {[d['role'] for d in docs]}")


def script_api_key(database: str, redis_db: int = SCRIPT_REDIS_DB) -> str:
    """A script's set-up: its own database, Django pointed at it, and a fresh API key."""
    prepare_database(database)
    setup_django_for_script(database, redis_db)
    from payments.services.api_keys import api_key_create

    _, api_key = api_key_create(name=f"fleet-{new_key()[:8]}")
    return api_key


# --- load ----------------------------------------------------------------------------------
@dataclass
class Hit:
    kind: str
    started: float  # s since the load began
    elapsed: float  # s
    status: int  # 0: no HTTP answer (connection error / client timeout)
    retry_after: str | None = None
    code: str = ""
    payment_id: str = ""
    payment_status: str = ""
    idem: str = ""


@dataclass
class Load:
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    t0: float = field(default_factory=time.monotonic)

    def add(self, hit: Hit) -> None:
        with self.lock:
            self.hits.append(hit)


def call(session: requests.Session, load: Load, kind: str, method: str, url: str, *, idem: str = "",
         timeout: float = 30.0, **kwargs: Any) -> Hit:
    started = time.monotonic()
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        hit = Hit(kind, started - load.t0, time.monotonic() - started, 0, code=type(exc).__name__, idem=idem)
        load.add(hit)
        return hit
    elapsed = time.monotonic() - started
    hit = Hit(kind, started - load.t0, elapsed, response.status_code, response.headers.get("Retry-After"),
              idem=idem)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body, dict):
        hit.code = str((body.get("error") or {}).get("code") or "")
        hit.payment_id = str(body.get("id") or "") if kind == "pay" else ""
        hit.payment_status = str(body.get("status") or "") if kind == "pay" else ""
    load.add(hit)
    return hit


class Payer:
    """A client of the payment API that, like a careful integrator, retries a 503 or a lost
    answer with the same Idempotency-Key (after Retry-After), up to `give_up_after` seconds."""

    def __init__(self, base_urls: list[str], api_key: str, run_id: str) -> None:
        self.base_urls, self.api_key, self.run_id = base_urls, api_key, run_id

    def pay_once(self, session: requests.Session, load: Load, idem: str, amount: int, n: int = 0) -> Hit:
        base = self.base_urls[n % len(self.base_urls)]
        body = {"amount": amount, "currency": "usd", "payment_method": "pm_card_visa",
                "metadata": {"fleet_run": self.run_id}}
        return call(session, load, "pay", "POST", f"{base}/api/v1/payments", idem=idem, json=body,
                    headers={"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": idem})


def run_clients(n: int, seconds: float, work: Callable[[requests.Session, Load, int, Callable[[], bool]], None],
                load: Load | None = None) -> Load:
    """`n` threads each calling `work(session, load, index, running)` until `seconds` pass."""
    load = load or Load()
    stop_at = time.monotonic() + seconds

    def running() -> bool:
        return time.monotonic() < stop_at

    def body(i: int) -> None:
        with requests.Session() as session:
            work(session, load, i, running)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    return load


def new_key() -> str:
    return uuid.uuid4().hex


def new_run_id() -> str:
    """A run tag for payment metadata without digit runs: the API refuses any body with a
    Luhn-valid run of 13-19 digits as card data, and a random hex string can contain one."""
    return "run-" + "".join("ghijklmnop"[int(c)] if c.isdigit() else c for c in uuid.uuid4().hex)


# --- figures -------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def status_counts(hits: list[Hit]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for h in hits:
        counts[h.status] = counts.get(h.status, 0) + 1
    return dict(sorted(counts.items()))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    model = cpu_model()
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; PostgreSQL and Redis on loopback, shared with other users")


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def write_section(title: str, body: str, path: Path = RELIABILITY_DOC) -> None:
    """Replace (or append) the `## title` section of docs/reliability.md with a dated one."""
    header = (f"## {title}\n\n*{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {machine()}.*\n\n"
              f"```\n{command_line()}\n```\n\n")
    replace_section(path, f"## {title}", header + body.strip() + "\n", title="Reliability under fire")


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def verdict_lines(checks: dict[str, bool]) -> list[str]:
    """The closing table of every scenario's report: each target, met or missed."""
    return ["", "| target | verdict |", "|---|---|", *[f"| {name} | {verdict(ok)} |" for name, ok in checks.items()]]


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A scenario script's parser, with the options every script shares."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="payops_fleet")
    parser.add_argument("--no-write", action="store_true", help="print the figures only")
    return parser


def add_redis_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-db", type=int, default=SCRIPT_REDIS_DB,
                        help=f"the fleet's Redis database number (default {SCRIPT_REDIS_DB})")


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of one fleet process (LOG_FORMAT=json), skipping anything else."""
    events = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def script_finish(title: str, text: str, *, ok: bool, write: bool) -> int:
    """Print the report, put it in docs/reliability.md unless told not to; exit status."""
    print(text)
    if write:
        write_section(title, text)
    return 0 if ok else 1


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def iter_chunks(seq: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


# --- the ledger against the gateway's truth --------------------------------------------------
def ledger_check(sandbox: SandboxStack, run_id: str, hits: list[Hit]) -> dict[str, Any]:
    """Our payments of this run against the gateway's intents (found by metadata fleet_run):
    duplicates, orphans (charged but unknown to us), answered-but-missing, unsettled, totals."""
    from payments.models import Payment

    intents = sandbox.intents_for("fleet_run", run_id)
    by_payment: dict[str, list[dict[str, Any]]] = {}
    for intent in intents:
        by_payment.setdefault((intent.get("metadata") or {}).get("payment_id", ""), []).append(intent)
    payments = {p.id: p for p in Payment.objects.filter(metadata__fleet_run=run_id)}
    answered = {h.payment_id for h in hits if h.kind == "pay" and h.status in (201, 202) and h.payment_id}
    statuses: dict[str, int] = {}
    for p in payments.values():
        statuses[p.status] = statuses.get(p.status, 0) + 1
    succeeded_intents = [i for i in intents if i.get("status") == "succeeded"]
    mismatched = [p.id for p in payments.values() if p.status == "succeeded"
                  and [i["id"] for i in by_payment.get(p.id, [])] != [p.gateway_id]]
    # What the gateway and we each hold for a mismatch: enough to tell a lost id from a wrong one.
    by_id = {i["id"]: i for i in intents}

    def owner(intent_id: str | None) -> Any:
        intent = by_id.get(intent_id or "")
        if intent is None and intent_id:
            # Another run's (an earlier row's) intent: ask the gateway itself whose it is.
            try:
                answer = requests.get(f"{sandbox.gateway_url}/v1/payment_intents/{intent_id}", timeout=5,
                                      headers={"Authorization": "Bearer sk_test_ledger"})
                if answer.status_code == 404:
                    return "unknown to this gateway: another gateway's intent (a worker on another gateway?)"
                intent = answer.json()
            except (requests.RequestException, ValueError) as exc:
                return f"not among this run's intents; the gateway could not be asked ({exc})"
        if intent is None:
            return None
        return {"payment_id": (intent.get("metadata") or {}).get("payment_id"), "amount": intent.get("amount"),
                "status": intent.get("status"), "fleet_run": (intent.get("metadata") or {}).get("fleet_run"),
                "this_run": intent_id in by_id}

    mismatch_detail = {pid: {"ours": payments[pid].gateway_id, "ours_belongs_to": owner(payments[pid].gateway_id),
                             "gateway": [(i["id"], i.get("status")) for i in by_payment.get(pid, [])],
                             "attempts": list(payments[pid].attempts.order_by("id").values_list(
                                 "operation", "outcome", "http_status", "gateway_request_id", "error"))}
                       for pid in mismatched}
    return {
        "payments": len(payments),
        "statuses": dict(sorted(statuses.items())),
        "intents": len(intents),
        "duplicates": sorted(pid for pid, group in by_payment.items() if len(group) > 1),
        "orphans": sorted(pid for pid in by_payment if pid not in payments),
        "answered_missing": sorted(answered - set(payments)),
        "unsettled": sorted(p.id for p in payments.values() if p.status in ("unknown", "processing")),
        "pending_charged": sorted(p.id for p in payments.values() if p.status == "pending" and by_payment.get(p.id)),
        "failed_charged": sorted(p.id for p in payments.values() if p.status == "failed"
                                 and any(i.get("status") == "succeeded" for i in by_payment.get(p.id, []))),
        "succeeded_mismatch": mismatched,
        "succeeded_mismatch_detail": mismatch_detail,
        "ledger_total": sum(p.amount for p in payments.values() if p.status == "succeeded"),
        "gateway_total": sum(int(i.get("amount") or 0) for i in succeeded_intents),
    }


def ledger_ok(ledger: dict[str, Any]) -> bool:
    return (not ledger["duplicates"] and not ledger["orphans"] and not ledger["answered_missing"]
            and not ledger["unsettled"] and not ledger["pending_charged"] and not ledger["failed_charged"]
            and not ledger["succeeded_mismatch"] and ledger["ledger_total"] == ledger["gateway_total"])


def settle_all(fleet: Fleet, run_id: str, *, timeout: float = 60.0) -> list[str]:
    """Lets the fleet settle every unknown / processing payment of the run: the Celery worker
    runs the settlement tasks the API queued, and the sweep (what beat sends every 60 s) is
    sent here every few seconds so a bounded run need not wait a whole minute. Returns what
    is still unsettled at the end."""
    from payments.models import Payment

    deadline = time.monotonic() + timeout
    last_sweep = 0.0
    left: list[str] = []
    while time.monotonic() < deadline:
        left = list(Payment.objects.filter(metadata__fleet_run=run_id, status__in=["unknown", "processing"])
                    .values_list("id", flat=True))
        if not left:
            return []
        if time.monotonic() - last_sweep > 5:
            fleet.send_task("payments.tasks.payment_settle_sweep")
            last_sweep = time.monotonic()
        time.sleep(0.5)
    return left


def retry_until_final(payer: Payer, keys: list[str], amount: int, *, timeout: float = 60.0) -> dict[str, Hit]:
    """Each key re-sent (same body) until it answers 201 or a final 4xx, or time runs out."""
    load = Load()
    final: dict[str, Hit] = {}
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while time.monotonic() < deadline and len(final) < len(keys):
            for n, key in enumerate(keys):
                if key in final:
                    continue
                hit = payer.pay_once(session, load, key, amount, n)
                if hit.status == 201 or 400 <= hit.status < 500 and hit.status != 409:
                    final[key] = hit
            if len(final) < len(keys):
                time.sleep(1.0)
    return final
