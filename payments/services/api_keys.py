"""API keys: created, rotated, revoked, and the client behind a presented key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from payments.models import (
    ApiClient,
)
from payments.services import create_path_sql

logger = logging.getLogger(__name__)


KEY_PREFIX = "pok_"


LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key


# --- API keys ------------------------------------------------------------------------------
def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_prefix(raw_key: str) -> str | None:
    """The public part of a key (pok_<prefix>_<secret>), or None if it is not shaped like one."""
    if not raw_key.startswith(KEY_PREFIX) or raw_key.count("_") < 2:
        return None
    return raw_key[len(KEY_PREFIX):].split("_", 1)[0]


def api_key_create(*, name: str, created_by: Any = None) -> tuple[ApiClient, str]:
    """Creates a client and returns its key: the only time the key is ever seen."""
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(name=name, prefix=prefix, key_hash=hash_key(raw_key), created_by=created_by)
    logger.info("api key created", extra={"category": "api_key_created", "client": name, "prefix": prefix})
    return client, raw_key


def api_key_rotate(*, client: ApiClient) -> str:
    """Gives the client a new key and returns it (the only time it is seen); the old key stops
    working at once in every process (the save announces the change to the key caches)."""
    old_prefix = client.prefix
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    client.prefix, client.key_hash, client.is_active, client.revoked_at = prefix, hash_key(raw_key), True, None
    client.save(update_fields=["prefix", "key_hash", "is_active", "revoked_at"])
    logger.info("api key rotated", extra={"category": "api_key_rotated", "client": client.name,
                                          "old_prefix": old_prefix, "prefix": prefix})
    return raw_key


def api_key_revoke(*, client: ApiClient) -> None:
    client.is_active = False
    client.revoked_at = timezone.now()
    client.save(update_fields=["is_active", "revoked_at"])
    logger.info("api key revoked", extra={"category": "api_key_revoked", "client": client.name})


def api_client_authenticate(*, raw_key: str) -> ApiClient | None:
    """The key's client, read from PostgreSQL (the API reads it through payments.api.keycache)."""
    prefix = api_key_prefix(raw_key)
    return api_client_verify(prefix=prefix, key_hash=hash_key(raw_key)) if prefix is not None else None


def api_client_verify(*, prefix: str, key_hash: str) -> ApiClient | None:
    """The active client with this prefix if its stored hash is `key_hash`; notes its use."""
    client = create_path_sql.api_client_by_prefix(prefix)
    if client is None or not hmac.compare_digest(client.key_hash, key_hash):
        return None
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        api_client_touch(client=client, now=now)
    return client


def api_client_touch(*, client: ApiClient, now: datetime) -> None:
    # An UPDATE, not save(): last use is not a change of the key (no post_save, no broadcast).
    ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
    client.last_used_at = now
