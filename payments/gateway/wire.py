"""How a request to the gateway is written: Stripe's auth scheme, metadata in one order, ids kept
to their path segment."""

from __future__ import annotations

import base64
from urllib.parse import quote


def basic_auth(api_key: str) -> str:
    """Stripe's scheme: the secret key as the user name of HTTP Basic auth, no password."""
    return "Basic " + base64.b64encode(f"{api_key}:".encode()).decode("ascii")


def canonical_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata in one order, whatever order it came in: a re-send (settlement, a repeat after a
    crash, rebuilt from jsonb, which sorts keys) is then byte-identical to the first send, as a
    gateway that fingerprints an idempotent request's body requires."""
    return {f"metadata[{key}]": str(metadata[key]) for key in sorted(metadata)}


def path_id(gateway_id: str) -> str:
    # Ids come from the gateway or from an operator: never let one reach another path.
    return quote(gateway_id, safe="")
