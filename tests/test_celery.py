import pytest

from health.tasks import ping


@pytest.mark.django_db(transaction=True)
def test_task_round_trips_through_redis_and_a_real_worker(worker) -> None:
    result = ping.delay("hello").get(timeout=30)
    assert result == {"echo": "hello", "application_name": "payops-worker"}
