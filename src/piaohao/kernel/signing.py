"""The merchant API's HMAC-SHA256 signature (API.md, Authentication), used both ways:
to verify merchant requests and to sign our notifications to merchants."""

from __future__ import annotations

import base64
import hashlib
import hmac


def canonical(method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return b"\n".join([method.upper().encode(), path_and_query.encode(), timestamp.encode(), nonce.encode(), body])


def sign(secret: str, method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), canonical(method, path_and_query, timestamp, nonce, body), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def verify(secret: str, signature: str, method: str, path_and_query: str, timestamp: str, nonce: str,
           body: bytes) -> bool:
    expected = sign(secret, method, path_and_query, timestamp, nonce, body)
    return hmac.compare_digest(expected.encode(), signature.encode())
