from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_live_answers_without_dependencies(client) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_ready_reports_database_and_redis(client) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert "gateway" not in body["checks"]


@pytest.mark.django_db(transaction=True)
def test_ready_is_503_when_redis_is_unreachable(client, settings) -> None:
    from config.redis import get_redis

    get_redis.cache_clear()
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    try:
        response = client.get("/health/ready")
    finally:
        get_redis.cache_clear()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["status"] == "down"


def test_unknown_url_is_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
