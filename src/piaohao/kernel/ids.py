"""Opaque identifiers we issue: a prefix, a time part that sorts, and randomness that cannot be guessed."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_id(prefix: str) -> str:
    """`prefix_` + 9 chars of milliseconds + 12 random chars: sortable by creation, 62 bits of randomness."""
    ms = int(time.time() * 1000)
    rand = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"{prefix}_{_base36(ms, 9)}{rand}"


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_token(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)
