import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from config.celery import app
from health.tasks import ping
from tests.support.processes import celery_worker, wait_until
from tests.support.tcpproxy import TcpProxy


@pytest.mark.django_db(transaction=True)
def test_task_round_trips_through_redis_and_a_real_worker(worker) -> None:
    result = ping.delay("hello").get(timeout=30)
    assert result == {"echo": "hello", "application_name": "payops-worker"}


@pytest.mark.django_db(transaction=True)
def test_a_worker_consumes_again_within_seconds_of_the_broker_returning(tmp_path) -> None:
    # kombu's own back-off tries again 2, 4, 6 … s apart: after 7.5 s away its next try
    # falls 12 s after the loss, 4.5 s after the return. Ours tries at most 2 s apart.
    redis = urlsplit(settings.REDIS_URL)
    queue = f"reconnect-{uuid.uuid4().hex[:8]}"  # the suite's own worker must not take these
    log = tmp_path / "worker.log"
    with TcpProxy((redis.hostname, redis.port)) as proxy:
        proxied = urlunsplit(redis._replace(netloc=f"127.0.0.1:{proxy.port}"))
        with celery_worker(concurrency=1, log=log, name="reconnect", queue=queue, REDIS_URL=proxied):
            assert app.send_task("health.tasks.ping", args=["before"], queue=queue).get(timeout=30)["echo"] == "before"
            # A task the worker holds, unacknowledged, until its countdown ends: the cut finds
            # it in the worker's hands (Celery 5.7 then crashed the worker closing the channel).
            held = app.send_task("health.tasks.ping", args=["held"], queue=queue, countdown=600)
            assert wait_until(lambda: f"{held.id}] received" in log.read_text(), timeout=10)
            proxy.cut()
            assert wait_until(lambda: "Connection to broker lost" in log.read_text(), timeout=10)
            time.sleep(7.5)
            proxy.restore()
            returned = time.monotonic()
            answer = app.send_task("health.tasks.ping", args=["after"], queue=queue).get(timeout=30)
            waited = time.monotonic() - returned
    assert answer["echo"] == "after"
    assert waited < 3.5, f"the worker took {waited:.1f} s to take a task after the broker returned"
