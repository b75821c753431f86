"""Alipay's side of RSA2: the fake's own key pair, the app keys merchants register, and the three
strings Alipay signs or verifies. Written against `cryptography` directly: the fake is another
company and shares no code with piaohao.

- request: every received parameter except `sign` (so `sign_type` IS signed), empty values dropped,
  sorted by key, `k=v` joined with `&`, raw (not URL-encoded) values;
- notification: the same, but `sign_type` is left out too;
- response: the exact text of the `<method>_response` JSON object, as sent.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "KEY_BITS", "generate_private_key", "load_public_key", "notification_content", "private_pem",
    "public_pem", "request_content", "sign", "verify",
]

KEY_BITS = 2048


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(text: str) -> rsa.RSAPublicKey:
    """An app public key as merchants upload it: PEM (SPKI or PKCS#1) or the bare base64 of SPKI."""
    text = text.strip()
    if "-----BEGIN" not in text:
        body = "\n".join(text[i:i + 64] for i in range(0, len(text), 64))
        text = f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"
    key = serialization.load_pem_public_key(text.encode())
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < KEY_BITS:
        raise ValueError(f"app key must be an RSA key of at least {KEY_BITS} bits")
    return key


def _content(params: Mapping[str, str], leave_out: set[str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in leave_out and v != "")


def request_content(params: Mapping[str, str]) -> str:
    return _content(params, {"sign"})


def notification_content(params: Mapping[str, str]) -> str:
    return _content(params, {"sign", "sign_type"})


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
