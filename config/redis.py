"""One Redis client per process, with short timeouts: Redis must never stall a payment."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=0.5,  # s
        socket_timeout=0.5,  # s
        health_check_interval=30,  # s
        max_connections=64,
    )
