"""RSA-2048 keys and RSA-SHA256 (PKCS#1 v1.5) signatures, as real channels (Alipay's RSA2) use.

Keys travel as PEM text (PKCS#8 private, SubjectPublicKeyInfo public). Parsing a PEM costs far
more than a signature check, so loaded key objects are cached by their PEM text; the cache is
bounded and holds no more than a handful of keys in practice.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["KEY_BITS", "generate_private_pem", "public_pem_of", "generate_key_pair", "load_public",
           "sign", "verify", "InvalidKey"]

KEY_BITS = 2048
PUBLIC_EXPONENT = 65537
KEY_CACHE_MAX = 256


class InvalidKey(ValueError):
    """A PEM text that is not an acceptable RSA key."""


def generate_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem_of(private_pem: str) -> str:
    return _load_private(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def generate_key_pair() -> tuple[str, str]:
    """A fresh (private_pem, public_pem)."""
    private_pem = generate_private_pem()
    return private_pem, public_pem_of(private_pem)


@lru_cache(maxsize=KEY_CACHE_MAX)
def _load_private(private_pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise InvalidKey("not a PEM private key") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidKey("not an RSA private key")
    return key


@lru_cache(maxsize=KEY_CACHE_MAX)
def load_public(public_pem: str) -> rsa.RSAPublicKey:
    """Parse (once) an RSA public key of at least 2048 bits; raises `InvalidKey` otherwise."""
    try:
        key = serialization.load_pem_public_key(public_pem.encode())
    except (ValueError, TypeError) as e:
        raise InvalidKey("not a PEM public key") from e
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidKey("not an RSA public key")
    if key.key_size < KEY_BITS:
        raise InvalidKey(f"RSA key must have at least {KEY_BITS} bits")
    return key


def sign(private_pem: str, data: bytes) -> str:
    """base64(RSA-SHA256-PKCS1v15(data))."""
    signature = _load_private(private_pem).sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def verify(public_pem: str, data: bytes, signature_b64: str | None) -> bool:
    """True only for a valid signature by the key; any malformed input is simply False."""
    if not signature_b64:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        load_public(public_pem).verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError, InvalidKey):
        return False
    return True
