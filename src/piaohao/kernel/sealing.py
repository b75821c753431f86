"""Secrets at rest: sealed (AES-256-GCM) under a key derived from `PIAOHAO_SECRET_KEY`.

A sealed value reads `v1.<key_id>.<base64(nonce || ciphertext)>`: `key_id` names the derived key
that sealed it (the first 8 hex digits of its SHA-256), so a value sealed under an older master
key is recognised, and opened when that key is given as a previous key during a rotation. The
purpose string is bound in as associated data, so a value sealed for one column cannot be
swapped into another. Nothing here logs or returns a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SECRET_KEY_CHARS_MIN", "SealError", "Sealer", "load_or_create_key_file"]

SECRET_KEY_CHARS_MIN = 32
_VERSION = "v1"
_NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed value that does not open (wrong key, tampered, not sealed)."""


def _derive(master: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"piaohao-sealing",
                info=b"piaohao secrets at rest v1").derive(master.encode())


class Sealer:
    """Seals and opens secrets. `previous` master keys open older values (for `keys rotate`)."""

    def __init__(self, master_key: str, previous: tuple[str, ...] = ()):
        if len(master_key) < SECRET_KEY_CHARS_MIN:
            raise SealError(f"PIAOHAO_SECRET_KEY must be at least {SECRET_KEY_CHARS_MIN} characters")
        self._key = _derive(master_key)
        self.key_id = hashlib.sha256(self._key).hexdigest()[:8]
        self._keys = {self.key_id: self._key}
        for old in previous:
            k = _derive(old)
            self._keys.setdefault(hashlib.sha256(k).hexdigest()[:8], k)

    def seal(self, plaintext: str, *, purpose: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        ct = AESGCM(self._key).encrypt(nonce, plaintext.encode(), purpose.encode())
        return f"{_VERSION}.{self.key_id}.{base64.b64encode(nonce + ct).decode()}"

    def open(self, sealed: str, *, purpose: str) -> str:
        try:
            version, key_id, blob = sealed.split(".", 2)
            raw = base64.b64decode(blob, validate=True)
        except (ValueError, binascii.Error, AttributeError):
            raise SealError("not a sealed value") from None
        key = self._keys.get(key_id)
        if version != _VERSION or key is None:
            raise SealError(f"sealed under an unknown key ({key_id})")
        try:
            return AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode()).decode()
        except InvalidTag:
            raise SealError("sealed value does not open: tampered, or another purpose") from None

    def is_current(self, sealed: str) -> bool:
        return sealed.startswith(f"{_VERSION}.{self.key_id}.")


def load_or_create_key_file(path: Path) -> str:
    """The embedded default's master key: generated once beside the SQLite file, mode 0600."""
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
