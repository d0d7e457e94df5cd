"""API keys checked against PostgreSQL once per process, not once per request.

Every request already asks Redis once (the rate limit); the same script also returns the
key generation, a random token that any change of an API key (create, rotate, revoke, edit,
delete) replaces. A key found here is trusted only while the token is the one it was found
under, so a revocation applies to every process at its next request. When Redis
cannot say (unreachable, or the token lost in a Redis restart) nothing is trusted from here:
every request asks PostgreSQL. A change whose broadcast was lost while Redis was
away but the processes still reached it is bounded by MAX_AGE.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass

import redis
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from config.redis import get_redis
from payments.models import ApiClient
from payments.services.api_keys import (
    LAST_USED_RESOLUTION,
    api_client_touch,
    api_client_verify,
    api_key_prefix,
    hash_key,
)

logger = logging.getLogger(__name__)

GENERATION_KEY = "payops:apikeys:generation"
MAX_AGE = 60.0  # s
LAST_USED_EVERY = LAST_USED_RESOLUTION.total_seconds()


@dataclass
class _Entry:
    client: ApiClient
    key_hash: str
    generation: str
    found_at: float  # time.monotonic()
    touched_at: float  # when last_used_at was last written, time.monotonic()


@dataclass(frozen=True)
class Verified:
    client: ApiClient
    prefix: str
    key_hash: str
    generation: str | None  # the token the cache vouched under; None: read from PostgreSQL now


_entries: dict[str, _Entry] = {}  # by key prefix
_seen: str | None = None  # the last generation this process was told


def authenticate(raw_key: str) -> Verified | None:
    """The key's client if the key is valid, from this process's cache when it has it."""
    prefix = api_key_prefix(raw_key)
    if prefix is None:
        return None
    key_hash = hash_key(raw_key)
    entry = _entries.get(prefix)
    now = time.monotonic()
    if entry is not None and now - entry.found_at < MAX_AGE and hmac.compare_digest(entry.key_hash, key_hash):
        if now - entry.touched_at > LAST_USED_EVERY:
            entry.touched_at = now
            api_client_touch(client=entry.client, now=timezone.now())
        return Verified(entry.client, prefix, key_hash, entry.generation)
    return _from_database(prefix, key_hash, tag=_seen)


def confirm(verified: Verified, generation: str | None) -> ApiClient | None:
    """The client once the rate limit has told the current generation (None: Redis could not
    say, "": Redis has no token). A key the cache vouched for under another token is read again."""
    global _seen
    if not generation:
        _entries.clear()
        _seen = None
        if generation == "":
            _start_generation()
    else:
        _seen = generation
    if verified.generation is None or verified.generation == generation:
        return verified.client
    _entries.pop(verified.prefix, None)
    fresh = _from_database(verified.prefix, verified.key_hash, tag=generation or None)
    return fresh.client if fresh is not None else None


def _from_database(prefix: str, key_hash: str, *, tag: str | None) -> Verified | None:
    # `tag` is a generation seen before this read: a change committed after the read replaces
    # the token, so the entry cannot outlive it.
    client = api_client_verify(prefix=prefix, key_hash=key_hash)
    if client is None:
        _entries.pop(prefix, None)
        return None
    if tag is not None:
        now = time.monotonic()
        _entries[prefix] = _Entry(client, key_hash, tag, found_at=now, touched_at=now)
    return Verified(client, prefix, key_hash, None)


def _start_generation() -> None:
    try:
        get_redis().set(GENERATION_KEY, secrets.token_hex(8), nx=True)
    except redis.RedisError:
        pass  # the next request tries again; until then nothing is cached


def announce_change() -> None:
    """A key changed: every process reads keys from PostgreSQL until it has seen it again."""
    try:
        get_redis().set(GENERATION_KEY, secrets.token_hex(8))
    except redis.RedisError:
        # The processes that reach Redis keep trusting their cache for at most MAX_AGE.
        logger.error("api key change not announced: Redis unreachable",
                     extra={"category": "api_key_announce_failed", "max_age_s": MAX_AGE})


@receiver(post_save, sender=ApiClient, dispatch_uid="api_key_changed_saved")
@receiver(post_delete, sender=ApiClient, dispatch_uid="api_key_changed_deleted")
def _api_key_changed(**kwargs: object) -> None:
    # Now, so no request trusts the old state from here on, and again after the commit, so
    # none keeps what it read between the two.
    announce_change()
    transaction.on_commit(announce_change)
