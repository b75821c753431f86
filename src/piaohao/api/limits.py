"""Limits on what anyone may send, before any route runs (pure ASGI middleware).

- A body larger than its route's limit is refused with `413 PAYLOAD_TOO_LARGE` (a `Content-Length`
  over it at once; a chunked body as soon as it passes it): signed `/v1` calls 256 KiB, everything
  unsigned (channel notifications, the cashier, the sandbox) `UNSIGNED_BODY_BYTES_MAX`.
- A NUL character anywhere in the path, the query or the body (raw, `\\u0000` in JSON, `%00` in a
  form) and unpaired UTF-16 surrogates in JSON are refused with `400 INVALID_REQUEST`: no database
  stores them (PostgreSQL refuses NUL in text), and a string `X` must never equal `X\\0`.
The body is read once and handed on unchanged.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import orjson

from piaohao.api.bodies import read_bounded, replaying
from piaohao.api.errors import error_body

__all__ = ["LimitsMiddleware", "SIGNED_BODY_BYTES_MAX", "UNSIGNED_BODY_BYTES_MAX"]

SIGNED_BODY_BYTES_MAX = 256 * 1024
UNSIGNED_BODY_BYTES_MAX = 64 * 1024
_JSON_NUL = re.compile(rb"\\u0000", re.IGNORECASE)
_JSON_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def body_limit(path: str) -> int:
    return SIGNED_BODY_BYTES_MAX if path.startswith("/v1/") else UNSIGNED_BODY_BYTES_MAX


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message


def _check_body(body: bytes, content_type: str) -> None:
    if b"\x00" in body or _JSON_NUL.search(body):
        raise _Refused(400, "INVALID_REQUEST", "NUL characters are not allowed")
    if "form-urlencoded" in content_type and b"%00" in body:
        raise _Refused(400, "INVALID_REQUEST", "NUL characters are not allowed")
    if _JSON_SURROGATE.search(body) and "json" in content_type:
        try:
            orjson.loads(body)  # refuses unpaired surrogates; paired ones (emoji) pass
        except orjson.JSONDecodeError:
            raise _Refused(400, "INVALID_REQUEST", "the body is not valid UTF-8 JSON") from None


class LimitsMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            self._check_target(scope)
            limit = body_limit(scope["path"])
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            declared = headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > limit:
                raise _Refused(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
            body = await read_bounded(receive, limit,
                                      lambda: _Refused(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes"))
            _check_body(body, headers.get("content-type", "").lower())
        except _Refused as refused:
            return await _answer(scope, send, refused)

        await self.app(scope, replaying(body, receive), send)

    @staticmethod
    def _check_target(scope) -> None:
        if "\x00" in scope["path"] or b"%00" in scope.get("raw_path", b""):
            raise _Refused(400, "INVALID_REQUEST", "NUL characters are not allowed")
        qs = scope.get("query_string", b"")
        if qs and b"\x00" in unquote_to_bytes(qs):
            raise _Refused(400, "INVALID_REQUEST", "NUL characters are not allowed")


async def _answer(scope, send, refused: _Refused) -> None:
    request_id = scope.get("state", {}).get("request_id", "")
    body = orjson.dumps(error_body(refused.code, refused.message, request_id))
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
