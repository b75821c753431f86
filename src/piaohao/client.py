"""A small merchant SDK for the piaohao API: sign requests, call the API, verify notifications.

It imports nothing else of piaohao (only the standard library and httpx), so a merchant can copy
this one file into their own project. The scheme (docs/api.md, "Signing"):

    X-Signature = base64(HMAC-SHA256(app_secret, METHOD\\nPATH_AND_QUERY\\nX-Timestamp\\nX-Nonce\\nBODY))

and the platform signs the notifications it POSTs to your `notify_url` the same way (METHOD is
POST, PATH_AND_QUERY the path of your notify_url), so one function serves both directions.

    client = PiaohaoClient("http://127.0.0.1:8000", app_id, app_secret)
    trade = client.post("/v1/trades", {"out_trade_no": "A1", "amount": 1999, "subject": "socks"})

    event = verify_notification(app_secret, request_headers, raw_body, "/notify")  # or raises
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["SIGNATURE_AGE_MAX_S", "ApiError", "InvalidNotification", "PiaohaoClient", "sign", "signed_headers",
           "verify_notification"]

SIGNATURE_AGE_MAX_S = 300  # the platform refuses requests further than this from its clock; so do we


def sign(app_secret: str, method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The X-Signature of one request (or notification)."""
    canonical = b"\n".join([method.upper().encode(), path_and_query.encode(), timestamp.encode(), nonce.encode(),
                            body])
    return base64.b64encode(hmac.new(app_secret.encode(), canonical, hashlib.sha256).digest()).decode()


def signed_headers(app_id: str, app_secret: str, method: str, path_and_query: str, body: bytes = b"", *,
                   timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four signing headers for one request; `path_and_query` exactly as sent (`/v1/trades?x=1`)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(12)
    return {"X-App-Id": app_id, "X-Timestamp": ts, "X-Nonce": nonce,
            "X-Signature": sign(app_secret, method, path_and_query, ts, nonce, body)}


class ApiError(Exception):
    """A non-2xx answer: the HTTP status and the body's `code`, `message` and `request_id`."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class InvalidNotification(Exception):
    """A notification that is not provably from the platform: answer it with a non-2xx status."""


class PiaohaoClient:
    """Signed calls to one platform as one app. Answers are decoded JSON; errors raise `ApiError`."""

    def __init__(self, base_url: str, app_id: str, app_secret: str, *, timeout_s: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id, self._secret = app_id, app_secret
        self.http = http or httpx.Client(timeout=timeout_s)

    def request(self, method: str, path_and_query: str, payload: Any = None) -> httpx.Response:
        """One signed request; the raw response (statements are CSV)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = signed_headers(self.app_id, self._secret, method, path_and_query, body)
        if body:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, self.base_url + path_and_query, content=body or None, headers=headers)

    def call(self, method: str, path_and_query: str, payload: Any = None) -> Any:
        r = self.request(method, path_and_query, payload)
        if r.status_code >= 300:
            try:
                err = r.json()
            except ValueError:
                err = {}
            raise ApiError(r.status_code, err.get("code", "HTTP_ERROR"), err.get("message", r.text[:200]),
                           err.get("request_id") or r.headers.get("x-request-id"))
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def get(self, path_and_query: str) -> Any:
        return self.call("GET", path_and_query)

    def post(self, path_and_query: str, payload: Any = None) -> Any:
        return self.call("POST", path_and_query, {} if payload is None else payload)

    def close(self) -> None:
        self.http.close()


def verify_notification(app_secret: str, headers: Mapping[str, str], body: bytes, path_and_query: str, *,
                        app_id: str | None = None, now_s: float | None = None,
                        age_max_s: float = SIGNATURE_AGE_MAX_S) -> dict:
    """Check a notification the platform POSTed to your notify_url and return the event
    (`{"id", "type", "created_at", "data"}`). Raises `InvalidNotification` when the signature is
    wrong, a header is missing, the timestamp is stale or the app is not yours. Deduplicate on the
    event's `id`: a retried event keeps it."""
    h = {k.lower(): v for k, v in headers.items()}
    try:
        ts, nonce, signature = h["x-timestamp"], h["x-nonce"], h["x-signature"]
    except KeyError as missing:
        raise InvalidNotification(f"missing header {missing.args[0]}") from None
    if app_id is not None and h.get("x-app-id") != app_id:
        raise InvalidNotification("the notification is for another app")
    expected = sign(app_secret, "POST", path_and_query, ts, nonce, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidNotification("bad signature")
    try:
        age_s = abs((time.time() if now_s is None else now_s) - int(ts))
    except ValueError:
        raise InvalidNotification("X-Timestamp is not Unix seconds") from None
    if age_s > age_max_s:
        raise InvalidNotification(f"the notification was signed {age_s:.0f} s from now")
    try:
        return json.loads(body)
    except ValueError:
        raise InvalidNotification("the body is not JSON") from None
