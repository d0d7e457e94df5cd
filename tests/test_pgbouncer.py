"""The service through Debian's PgBouncer in transaction pooling mode (DB_PGBOUNCER=true): a
gunicorn web and a Celery worker reach PostgreSQL only through it; payments, a health run, the
console and a settlement work, and the pool figures say what they mean there (Django's pools
count connections to PgBouncer; PgBouncer holds the server connections)."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from health.models import Alert, HealthCheckRun
from payments.models import Payment
from tests.payments.factories import ISSUED_KEYS, make_client
from tests.support import pgbouncer as bouncer_support
from tests.support.processes import celery_worker, gunicorn, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow,
              pytest.mark.skipif(not bouncer_support.available(), reason="pgbouncer is not installed "
                                 "(scripts/pgbouncer.sh, run by make prepare, installs it)")]

PAYMENTS = 40
THREADS = 8
SERVER_POOL = 4  # PgBouncer's default_pool_size: server connections for the whole fleet
POOL_MAX = 100  # Django's pool per process: any one process alone may open more than the server allows
# Figures of the last run, for docs/scaling.md.
FIGURES: dict[str, object] = {}


def _pay(base: str, key: str) -> int:
    """One payment as a client makes it: a 503 is retried with the same key after its Retry-After
    (the web tier sheds a burst it cannot start at once)."""
    idempotency_key = uuid.uuid4().hex
    for _ in range(10):
        answer = requests.post(f"{base}/api/v1/payments", timeout=30,
                               headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key},
                               json={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"})
        if answer.status_code != 503:
            break
        time.sleep(min(2.0, float(answer.headers.get("Retry-After", "1"))))
    return answer.status_code


def _login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=10)
    done = session.post(f"{base}/admin/login/", timeout=10, allow_redirects=False,
                        data={"username": username, "password": password, "next": "/admin/",
                              "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                        headers={"Referer": f"{base}/admin/login/"})
    assert done.status_code == 302, done.text[:500]
    return session


def test_payments_health_console_and_settlement_run_through_pgbouncer(gateway, tmp_path: Path) -> None:
    db = settings.DATABASES["default"]
    get_user_model().objects.create_superuser("bouncer-admin", password="pw-bouncer-1")
    _, key = make_client()
    queue = f"pgbouncer-{uuid.uuid4().hex[:6]}"
    with bouncer_support.pgbouncer(server_host=db["HOST"], server_port=int(db["PORT"]), user=db["USER"],
                                   pool_size=SERVER_POOL) as bouncer:
        # Pools whose maxima add up past the server's max_connections: harmless behind PgBouncer,
        # which alone holds server connections (SERVER_POOL of them).
        env = {"DATABASE_URL": bouncer.url(db["NAME"]), "DB_PGBOUNCER": "true", "HEALTH_PUBLISH_INTERVAL": "1",
               "PAYMENT_GATEWAY_URL": gateway.proxy_url, "DB_MAX_CONNECTIONS": str(POOL_MAX)}
        with gunicorn(workers=2, threads=THREADS // 2, log=tmp_path / "web.log", **env) as base, \
                celery_worker(log=tmp_path / "worker.log", name="pgbouncer", queue=queue, **env):
            assert requests.get(f"{base}/health/ready", timeout=10).status_code == 200

            started = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                codes = list(pool.map(lambda _: _pay(base, key), range(PAYMENTS)))
            elapsed = time.perf_counter() - started
            assert codes == [201] * PAYMENTS
            pools = bouncer.show("POOLS")
            ours = next(p for p in pools if p["database"] == db["NAME"])
            stats = next(s for s in bouncer.show("STATS") if s["database"] == db["NAME"])
            servers = [s for s in bouncer.show("SERVERS") if s["database"] == db["NAME"]]
            clients = [c for c in bouncer.show("CLIENTS") if c["database"] == db["NAME"]]
            # Every client connection of Django's pools is PgBouncer's; the server sees at most its pool.
            assert len(servers) <= SERVER_POOL < len(clients)

            # A health run in the worker behind PgBouncer (its own queue: nobody else takes it).
            from config.redis import get_redis
            from health.tasks import health_check_run

            for claim in get_redis().scan_iter("payops:health:tick:*"):  # an earlier test's claim of this tick
                get_redis().delete(claim)
            health_check_run.apply_async(kwargs={"interval": 30}, queue=queue)
            run = wait_until(lambda: HealthCheckRun.objects.first(), timeout=20, interval=0.2)
            assert run is not None, (tmp_path / "worker.log").read_text()[-2000:]
            database = run.snapshots.get(component="database")
            # The pools' maxima are PgBouncer's clients: never read as a demand on the server.
            assert database.figures["server"]["behind_pgbouncer"] is True
            server = database.figures["server"]
            assert server["pool_max_total"] > server["capacity"] and server["fits"] is True
            assert "pool_oversubscribed" not in {a.condition for a in Alert.objects.filter(component="database")}

            # The console behind it.
            session = _login(base, "bouncer-admin", "pw-bouncer-1")
            page = session.get(f"{base}/admin/health/healthcheckrun/system/", timeout=20)
            assert page.status_code == 200 and "Fleet" in page.text
            live = session.get(f"{base}/admin/health/healthcheckrun/system/live/", timeout=20)
            assert "BEHIND PGBOUNCER" in live.text and "OVERSUBSCRIBED" not in live.text

            # A settlement: the gateway's answer lost, the worker asks again through PgBouncer.
            gateway.fault("truncate", count=1, method="POST", path_prefix="/v1/payment_intents")
            unknown = requests.post(f"{base}/api/v1/payments", timeout=30,
                                    headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
                                    json={"amount": 1200, "currency": "usd", "payment_method": "pm_card_visa"})
            assert unknown.status_code == 202, unknown.text
            from payments.tasks import payment_settle_task

            task = payment_settle_task.apply_async((unknown.json()["id"],), queue=queue)
            assert wait_until(lambda: Payment.objects.get(pk=unknown.json()["id"]).status == "succeeded",
                              timeout=20, interval=0.2)
            assert wait_until(lambda: task.id in (tmp_path / "worker.log").read_text(), timeout=5)

    FIGURES.update({
        "payments": PAYMENTS, "threads": THREADS, "seconds": round(elapsed, 2),
        "per_second": round(PAYMENTS / elapsed, 1), "server_pool": SERVER_POOL,
        "server_connections": len(servers), "client_connections": len(clients),
        "maxwait_us": ours.get("maxwait", 0) * 1_000_000 + ours.get("maxwait_us", 0),
        "transactions": stats.get("total_xact_count"), "queries": stats.get("total_query_count"),
        "avg_xact_us": stats.get("avg_xact_time"), "database_check": database.message,
        "pools_max_total": database.figures["server"]["pool_max_total"],
        "health_run_ms": round(run.duration_ms, 1),
    })
    print("pgbouncer figures: " + json.dumps(FIGURES, default=str))
    ISSUED_KEYS.append(key)
