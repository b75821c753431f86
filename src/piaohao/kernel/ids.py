"""Opaque identifiers we issue: a prefix, a time part that sorts, and randomness that cannot be guessed."""

from __future__ import annotations

import base64
import os
import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


_ms_part: tuple[int, str] = (-1, "")


def new_id(prefix: str) -> str:
    """`prefix_` + 9 chars of milliseconds (base36) + 12 random chars: sortable by creation, 60 bits
    of randomness from one urandom call in lower-case base32 (letters and 2-7, a subset of base36),
    encoded in C; the time part is computed once per millisecond. Twelve `secrets.choice` calls
    were a quarter of the ledger's batch CPU and 6 % of a create-trade (docs/speed.md)."""
    global _ms_part
    ms = int(time.time() * 1000)
    part = _ms_part
    if part[0] != ms:
        part = _ms_part = (ms, _base36(ms, 9))
    return f"{prefix}_{part[1]}{base64.b32encode(os.urandom(8))[:12].decode().lower()}"


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_token(nbytes: int = 18) -> str:
    return secrets.token_urlsafe(nbytes)
