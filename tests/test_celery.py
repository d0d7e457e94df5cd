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


@pytest.mark.parametrize("held", ["waiting for its countdown", "running when Redis goes"])
@pytest.mark.django_db(transaction=True)
def test_a_worker_consumes_again_within_seconds_of_the_broker_returning(tmp_path, held: str) -> None:
    # Celery 5.7's own consumer exits when the connection drops while it holds a task (closing
    # the channel, or the late acknowledgement of a task that was running, finds no client).
    # kombu's own back-off tries again 2, 4, 6 … s apart: after 7.5 s away its next try falls
    # 12 s after the loss, 4.5 s after the return. Ours tries at most 2 s apart.
    redis = urlsplit(settings.REDIS_URL)
    queue = f"reconnect-{uuid.uuid4().hex[:8]}"  # the suite's own worker must not take these
    log = tmp_path / "worker.log"
    with TcpProxy((redis.hostname, redis.port)) as proxy:
        proxied = urlunsplit(redis._replace(netloc=f"127.0.0.1:{proxy.port}"))
        with celery_worker(concurrency=2, log=log, name="reconnect", queue=queue, REDIS_URL=proxied) as proc:
            assert app.send_task("health.tasks.ping", args=["before"], queue=queue).get(timeout=30)["echo"] == "before"
            if held == "waiting for its countdown":
                task = app.send_task("health.tasks.ping", args=["held"], queue=queue, countdown=600)
            else:  # it ends, and acknowledges through the old channel, after Redis is back
                task = app.send_task("tests.support.tasks.nap", args=[10], queue=queue)
            assert wait_until(lambda: f"{task.id}] received" in log.read_text(), timeout=10)
            proxy.cut()
            assert wait_until(lambda: "Connection to broker lost" in log.read_text(), timeout=10)
            time.sleep(7.5)
            proxy.restore()
            returned = time.monotonic()
            answer = app.send_task("health.tasks.ping", args=["after"], queue=queue).get(timeout=30)
            waited = time.monotonic() - returned
            if held == "running when Redis goes":
                assert task.get(timeout=30) == 10
                time.sleep(0.5)  # its acknowledgement
            assert proc.poll() is None, "the worker exited"
    assert "Unrecoverable error" not in log.read_text()
    assert answer["echo"] == "after"
    assert waited < 3.5, f"the worker took {waited:.1f} s to take a task after the broker returned"
