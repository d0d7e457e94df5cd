"""Stripe's idempotency contract, which localstripe ignores.

Keyed by (Authorization header, Idempotency-Key), like Stripe's per-account keys. The
first request claims the key; once the gateway has answered, that answer is saved and
every later request with the same key and the same method+path+body gets it back
(`Idempotent-Replayed: true`) without reaching the gateway. Same key, other parameters:
400. Same key while the first is still being processed: 409.

What is saved follows Stripe: an answer is saved as soon as the gateway produced it, even
if it is then lost on the way back to the client (that is what makes a retry after a
timeout safe). Nothing is saved when no answer was produced (connection failures) or for
5xx (Stripe lets you retry those), 401 and 429 (the endpoint never started executing).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from sandbox.http11 import Request, Response

TTL_SECONDS = 24 * 3600  # Stripe keeps keys for at least 24 hours
MAX_KEYS = 100_000  # a benchmark must not grow us without bound
MAX_KEY_LENGTH = 255
UNSAVED_STATUSES = frozenset({401, 429})


class Outcome(Enum):
    NEW = "new"  # forward it; call complete() or abandon() afterwards
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_USE = "in_use"


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    created: float
    response: Response | None = None  # None while the first request is in flight


def scope_of(req: Request) -> str:
    # Hash the credential: it is only an identity here, and must not sit in memory dumps.
    return hashlib.sha256((req.header("authorization") or "").encode()).hexdigest()


def fingerprint_of(req: Request) -> bytes:
    """Method, path (with query) and the exact body bytes.

    Byte equality is stricter than Stripe's parameter comparison, but a client that
    re-sends the same request encodes it the same way, and a differing body is exactly
    the bug this check exists to catch.
    """
    h = hashlib.sha256()
    h.update(req.method.encode())
    h.update(b" ")
    h.update(req.target.encode())
    h.update(b"\n")
    h.update(req.body)
    return h.digest()


def should_save(resp: Response) -> bool:
    return resp.status < 500 and resp.status not in UNSAVED_STATUSES


class IdempotencyStore:
    def __init__(self, ttl: float = TTL_SECONDS, max_keys: int = MAX_KEYS) -> None:
        self._ttl = ttl
        self._max_keys = max_keys
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, scope: str, key: str, fingerprint: bytes) -> tuple[Outcome, Response | None]:
        now = time.monotonic()
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is not None and now - entry.created > self._ttl:
            del self._entries[(scope, key)]
            entry = None
        if entry is None:
            self._entries[(scope, key)] = _Entry(fingerprint, now)
            self._evict()
            return Outcome.NEW, None
        if entry.fingerprint != fingerprint:
            return Outcome.MISMATCH, None
        if entry.response is None:
            return Outcome.IN_USE, None
        return Outcome.REPLAY, entry.response

    def complete(self, scope: str, key: str, response: Response) -> None:
        entry = self._entries.get((scope, key))
        if entry is None:
            return  # cleared by a reset while in flight
        if should_save(response):
            entry.response = response
        else:
            del self._entries[(scope, key)]

    def abandon(self, scope: str, key: str) -> None:
        entry = self._entries.get((scope, key))
        if entry is not None and entry.response is None:
            del self._entries[(scope, key)]

    def clear(self) -> None:
        self._entries.clear()

    def _evict(self) -> None:
        # Oldest first; never evict an in-flight claim (its owner will complete it).
        while len(self._entries) > self._max_keys:
            for k, entry in self._entries.items():
                if entry.response is not None:
                    del self._entries[k]
                    break
            else:
                return
