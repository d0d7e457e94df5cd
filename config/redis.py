"""One Redis client per process, with short timeouts: Redis must never stall a payment."""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,  # s
        socket_timeout=0.5,  # s
        health_check_interval=30,  # s
        max_connections=64,
        # redis-py 8 retries ten times with backoff by default: seconds of stall per call
        # when Redis is away. One quick retry covers a dropped idle connection.
        retry=Retry(NoBackoff(), 1),
    )
