"""Public identifiers: a type prefix and 24 random base62 characters (like Stripe's)."""

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_LENGTH = 24


def new_id(prefix: str) -> str:
    # One read of the system's random source, not one per character (secrets.choice): 192
    # random bits folded into 24 base62 digits (about 143 bits): the bias is below 2**-49.
    n = secrets.randbits(192)
    chars = []
    for _ in range(_LENGTH):
        n, digit = divmod(n, 62)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_" + "".join(chars)
