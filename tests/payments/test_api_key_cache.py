"""API keys are read from PostgreSQL once per process, and a change still applies at once."""

from __future__ import annotations

import pytest
import requests

from config.redis import get_redis
from payments.api import keycache
from payments.models import ApiClient
from payments.services.api_keys import api_key_revoke, api_key_rotate
from tests.payments.factories import Api, make_client
from tests.support.processes import gunicorn

pytestmark = pytest.mark.django_db(transaction=True)


def _warm(api: Api) -> None:
    # The first request of a process learns the generation; the next one caches the key.
    for _ in range(3):
        assert api.get("/api/v1/payments").status_code == 200


def _disable_unannounced(client: ApiClient) -> None:
    # A change made behind the application's back (SQL, not a save): nothing announces it,
    # so only a read from PostgreSQL can see it.
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)


def test_a_cached_key_is_used_without_reading_it_again_until_a_change_is_announced() -> None:
    client, key = make_client()
    api = Api(key)
    _warm(api)
    _disable_unannounced(client)
    assert api.get("/api/v1/payments").status_code == 200  # vouched for by this process's cache
    keycache.announce_change()  # what any save of an ApiClient does
    assert api.get("/api/v1/payments").status_code == 401


def test_a_revoked_key_is_refused_by_the_next_request_though_it_was_cached() -> None:
    client, key = make_client()
    api = Api(key)
    _warm(api)
    api_key_revoke(client=client)
    response = api.get("/api/v1/payments")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_rotated_key_is_refused_and_the_new_one_accepted() -> None:
    client, old = make_client()
    _warm(Api(old))
    new = api_key_rotate(client=client)
    assert Api(old).get("/api/v1/payments").status_code == 401
    assert Api(new).get("/api/v1/payments").status_code == 200


def test_when_redis_lost_the_generation_every_request_reads_postgresql() -> None:
    client, key = make_client()
    api = Api(key)
    _warm(api)
    get_redis().delete(keycache.GENERATION_KEY)  # as after a Redis restart
    _disable_unannounced(client)
    assert api.get("/api/v1/payments").status_code == 401
    assert get_redis().get(keycache.GENERATION_KEY)  # and a new generation was started


def test_a_wrong_secret_with_a_cached_prefix_is_refused() -> None:
    _, key = make_client()
    _warm(Api(key))
    prefix, _, secret = key.rpartition("_")
    assert Api(f"{prefix}_{secret[::-1]}").get("/api/v1/payments").status_code == 401


def test_a_revocation_in_another_process_applies_to_a_gunicorn_worker_at_its_next_request(tmp_path) -> None:
    client, key = make_client()
    headers = {"Authorization": f"Bearer {key}"}
    with gunicorn(workers=1, threads=2, log=tmp_path / "web.log") as base:
        for _ in range(4):
            assert requests.get(f"{base}/api/v1/payments", headers=headers, timeout=10).status_code == 200
        api_key_revoke(client=client)  # this process, as the console would
        assert requests.get(f"{base}/api/v1/payments", headers=headers, timeout=10).status_code == 401
