"""The signing gateway, as pure ASGI middleware in front of every route.

For every request: a request id (header `X-Request-Id`, also in logs). For `/v1/*`: app lookup,
timestamp window, HMAC signature over the raw body, nonce replay store, per-merchant rate limit;
the authenticated merchant and app go into `scope["state"]`. The body is read once, verified, and
handed on unchanged. With the app's credentials cached, the checks run on the event loop (no
thread hand-off); the nonce of a create-trade commits in the trade's own transaction
(`NONCE_WITH_THE_WRITE`), so such a request reaches its use case in one hop and one transaction.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread
import orjson
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import delete

from piaohao.api.bodies import read_bounded, replaying
from piaohao.api.errors import error_body, status_of
from piaohao.api.ratelimit import RateLimiter, make_limiter
from piaohao.db import ride_along
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema import nonces
from piaohao.kernel.errors import (
    InvalidSignature,
    NonceReused,
    PayloadTooLarge,
    PiaohaoError,
    RateLimited,
    TimestampExpired,
    UnknownApp,
)
from piaohao.kernel.signing import verify
from piaohao.platform import Platform
from piaohao.services.merchants import AppAuth, load_app_auth

log = structlog.get_logger("piaohao.http")
TIMESTAMP_WINDOW_S = 300
TIMESTAMP_CHARS_MAX = 12
NONCE_TTL_S = 600
NONCE_RE = re.compile(r"^[\x21-\x7e]{16,64}$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
BODY_BYTES_MAX = 256 * 1024
APP_CACHE_TTL_S = 1.0  # a disabled app stops working within this long

HTTP_REQUESTS = Counter("piaohao_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("piaohao_http_request_seconds", "HTTP request latency", ["route"],
                         buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))


def route_label(path: str) -> str:
    """A low-cardinality label: the first two segments (`/v1/trades`, `/cashier`, ...)."""
    parts = [x for x in path.split("/") if x][:2]
    if parts and parts[0] not in ("v1", "channels", "cashier", "console", "healthz", "metrics", "openapi.json",
                                  "docs"):
        return "/other"  # mounted channel simulators and unknown paths
    if parts and parts[0] in ("cashier", "console"):
        parts = parts[:1]
    return "/" + "/".join(parts)


# Requests whose use case writes before it has any other effect: their nonce commits in that
# write's transaction (one transaction per request instead of two). A refund calls the channel
# only after the transaction that created it (which carried the nonce) committed. Any other request records
# its nonce on its own before the endpoint runs, as the endpoint might call out first.
NONCE_WITH_THE_WRITE = frozenset({("POST", "/v1/trades"), ("POST", "/v1/refunds")})


@dataclass
class Verified:
    auth: AppAuth
    nonce: str
    at: datetime


class NonceClaim:
    """Record a request's nonce; NonceReused if the app already used it within the window."""

    def __init__(self, v: Verified):
        self.v = v
        self.reused = False

    def __call__(self, conn) -> None:
        row = {"app_id": self.v.auth.app_id, "nonce": self.v.nonce, "created_at": self.v.at}
        if not insert_if_absent(conn, nonces, row, ("app_id", "nonce")):
            self.reused = True
            raise NonceReused(f"X-Nonce was already used within {NONCE_TTL_S} s")


class Authenticator:
    def __init__(self, p: Platform):
        self.p = p
        self.limiter = make_limiter(p)
        self._apps: dict[str, tuple[float, AppAuth | None]] = {}

    def cached(self, app_id: str) -> tuple[AppAuth | None] | None:
        """The app's cached lookup, `(auth,)` (auth None: no such app), or None if not fresh."""
        hit = self._apps.get(app_id)
        return (hit[1],) if hit is not None and hit[0] > time.monotonic() else None

    def _app(self, app_id: str, now: datetime) -> AppAuth | None:
        mono = time.monotonic()
        hit = self._apps.get(app_id)
        if hit and hit[0] > mono:
            return hit[1]
        auth = load_app_auth(self.p, app_id, now)
        if len(self._apps) > 10_000:
            self._apps.clear()
        self._apps[app_id] = (mono + APP_CACHE_TTL_S, auth)
        return auth

    def verify(self, method: str, path_qs: str, headers: dict[str, str], body: bytes,
               known: tuple[AppAuth | None] | None = None) -> Verified:
        """The app, the timestamp, the nonce's form and the signature, in the order API.md gives the
        errors (the rate limit and the nonce's novelty come after). With `known` (from `cached`) it
        does not touch the database."""
        now = self.p.clock.now()
        app_id = headers.get("x-app-id", "")
        if known is not None:
            auth = known[0]
        else:
            auth = self._app(app_id, now) if app_id else None
        if auth is None or not auth.active:
            raise UnknownApp("unknown or disabled app")
        ts = headers.get("x-timestamp", "")
        nonce = headers.get("x-nonce", "")
        signature = headers.get("x-signature", "")
        if not (ts.isascii() and ts.isdigit() and len(ts) <= TIMESTAMP_CHARS_MAX):
            raise InvalidSignature("X-Timestamp must be Unix seconds (ASCII digits)")
        if abs(int(ts) - now.timestamp()) > TIMESTAMP_WINDOW_S:
            raise TimestampExpired(f"X-Timestamp is more than {TIMESTAMP_WINDOW_S} s from server time")
        if not NONCE_RE.match(nonce):
            raise InvalidSignature("X-Nonce must be 16-64 printable characters")
        if not signature or not any(verify(s, signature, method, path_qs, ts, nonce, body) for s in auth.secrets):
            raise InvalidSignature("signature does not match")
        return Verified(auth, nonce, now)

    def remember_nonce(self, claim: NonceClaim) -> None:
        """The nonce in a transaction of its own."""
        def tx(conn):
            if not self.p.db.is_sqlite:
                # A nonce lost to a database crash only reopens a 10-minute replay window, which
                # idempotency keys already make harmless; not waiting for its WAL flush halves the
                # commit cost of such a request.
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            claim(conn)

        self.p.db.write(tx)


def purge_nonces(p: Platform) -> int:
    """Forget nonces older than the replay window (plus the timestamp window, to be safe)."""
    cutoff = p.clock.now() - timedelta(seconds=NONCE_TTL_S + TIMESTAMP_WINDOW_S)
    return p.db.write(lambda conn: conn.execute(delete(nonces).where(nonces.c.created_at < cutoff)).rowcount) or 0


class GatewayMiddleware:
    def __init__(self, app, platform: Platform):
        self.app = app
        self.auth = Authenticator(platform)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else "req_" + secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        path = scope["path"]
        status_holder = {"status": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if path.startswith("/v1/") or path == "/v1":
                await self._authenticated(scope, receive, send_with_id, headers, state)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = route_label(path)
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(scope["method"], route, str(status_holder["status"])).inc()
            HTTP_LATENCY.labels(route).observe(elapsed)
            log.info("http.request", request_id=request_id, method=scope["method"], path=path,
                     status=status_holder["status"], ms=round(elapsed * 1000, 2), merchant_id=state.get("merchant_id"),
                     trade_no=state.get("trade_no"))

    async def _authenticated(self, scope, receive, send, headers, state):
        try:
            body = await _read_body(receive)
            qs = scope.get("query_string", b"").decode("latin-1")
            path_qs = scope.get("raw_path", scope["path"].encode()).decode("latin-1") + (f"?{qs}" if qs else "")
            method = scope["method"]
            known = self.auth.cached(headers.get("x-app-id", ""))
            if known is not None:
                # HMAC and a token bucket: microseconds, not worth a thread hand-off.
                verified = self.auth.verify(method, path_qs, headers, body, known)
            else:
                verified = await anyio.to_thread.run_sync(self.auth.verify, method, path_qs, headers, body)
            merchant = verified.auth.merchant_id
            wait_s = self.auth.limiter.acquire_from_memory(merchant)
            if wait_s is None:  # this process must draw tokens from the shared bucket first
                wait_s = await anyio.to_thread.run_sync(self.auth.limiter.acquire, merchant)
            if wait_s > 0:
                raise RateLimited(int(RateLimiter.retry_after_header(wait_s)))
            claim = NonceClaim(verified)
            with_the_write = (method, scope["path"]) in NONCE_WITH_THE_WRITE
            if not with_the_write:
                await anyio.to_thread.run_sync(self.auth.remember_nonce, claim)
        except PiaohaoError as exc:
            return await _send_error(send, exc, state)
        auth = verified.auth
        state["merchant_id"], state["app_id"] = auth.merchant_id, auth.app_id
        structlog.contextvars.bind_contextvars(merchant_id=auth.merchant_id)
        if not with_the_write:
            return await self.app(scope, replaying(body, receive), send)
        await self._with_the_write(scope, replaying(body, receive), send, claim, state)

    async def _with_the_write(self, scope, receive, send, claim: NonceClaim, state) -> None:
        """Run the endpoint with the nonce riding along in its first write transaction. If it
        answers without having committed one (a refused request), the nonce is recorded on its own
        before the answer leaves, and a reused nonce turns the answer into NONCE_REUSED: the same
        answers as recording it first, for a request that changed nothing."""
        ride = ride_along.RideAlong(claim)
        refused = False

        async def send_once_claimed(message):
            nonlocal refused
            if message["type"] == "http.response.start" and not ride.committed and not claim.reused:
                ride.withdraw()
                try:
                    await anyio.to_thread.run_sync(self.auth.remember_nonce, claim)
                except NonceReused as exc:
                    refused = True
                    return await _send_error(send, exc, state)
            if not refused:
                await send(message)

        token = ride_along.attach(ride)
        try:
            await self.app(scope, receive, send_once_claimed)
        finally:
            ride_along.detach(token)


async def _send_error(send, exc: PiaohaoError, state) -> None:
    extra = [(b"retry-after", str(exc.retry_after_s).encode())] if isinstance(exc, RateLimited) else []
    await _send_json(send, status_of(exc), error_body(exc.code, exc.message, state["request_id"]), extra)


async def _read_body(receive) -> bytes:
    return await read_bounded(receive, BODY_BYTES_MAX,
                              lambda: PayloadTooLarge(f"request body over {BODY_BYTES_MAX} bytes"))


async def _send_json(send, status: int, payload: dict, extra_headers=()) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra_headers]})
    await send({"type": "http.response.body", "body": body})
