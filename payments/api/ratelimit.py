"""Per-key rate limiting shared by every process: a token bucket in one Redis script.

When Redis is away the API keeps serving (payments matter more than fairness) and says so
once per outage in the log. While it is away one request every REDIS_RETRY_SECONDS asks it
again and the others do not wait: a Redis that hangs costs a request its 0.5 s timeouts, not
every request.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

from config.redis import get_redis
from payments.api.keycache import GENERATION_KEY

logger = logging.getLogger(__name__)

# KEYS[1] bucket, KEYS[2] the API key generation (payments/api/keycache.py, read here to save
# a round trip); ARGV rate (tokens/s), burst, now (ms). Returns {allowed, wait_ms, generation}.
_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (math.max(0, now - at) / 1000.0) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait, redis.call('GET', KEYS[2]) or ''}
"""

REDIS_RETRY_SECONDS = 2.0  # while Redis is away, ask it again at most this often (one request)

_script = None
_redis_down = False
_retry_at = 0.0  # monotonic s
_retry_lock = threading.Lock()


def _skip_redis() -> bool:
    """While Redis is away: True for every request but one each REDIS_RETRY_SECONDS."""
    global _retry_at
    if not _redis_down:
        return False
    with _retry_lock:
        now = time.monotonic()
        if now < _retry_at:
            return True
        _retry_at = now + REDIS_RETRY_SECONDS  # this request asks; the others go on meanwhile
        return False


def rate_limit_check(*, key_id: str) -> tuple[bool, float, str | None]:
    """(allowed, retry_after seconds, API key generation) for one request of this API key;
    the generation is None when Redis could not be asked, "" when it has none."""
    global _script, _redis_down, _retry_at
    rate, burst = settings.API_RATE_LIMIT, settings.API_RATE_BURST
    if _skip_redis():
        return True, 0.0, None
    try:
        if _script is None:
            _script = get_redis().register_script(_BUCKET)
        allowed, wait_ms, generation = _script(keys=[f"payops:ratelimit:{key_id}", GENERATION_KEY],
                                               args=[rate, burst, int(time.time() * 1000)])
    except redis.RedisError:
        if not _redis_down:
            logger.warning("rate limiting paused: Redis unreachable", extra={"category": "ratelimit_unavailable"})
            _retry_at = time.monotonic() + REDIS_RETRY_SECONDS
        _redis_down = True
        return True, 0.0, None
    _redis_down = False
    return bool(allowed), wait_ms / 1000.0, generation.decode()
