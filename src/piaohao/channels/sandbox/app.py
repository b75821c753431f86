"""The sandbox channel's HTTP face: a Starlette app, mounted by the platform at `/sandbox` or
run on its own (`standalone.serve_standalone`). Paths below are relative to where it is mounted.

Signed merchant API (RSA-SHA256 both ways, see `wire`):
  POST /api/pay, /api/query, /api/close, /api/refund, /api/refund/query, /api/payout,
  /api/payout/query, /api/card/bind, /api/card/confirm, /api/card/unbind (see `bank`);
  GET /api/bill?date=YYYY-MM-DD (CSV).
  Request headers `Sandbox-Mch-Id`, `Sandbox-Timestamp` (Unix seconds, within 300 s) and
  `Sandbox-Signature` over `METHOD\\nPATH_AND_QUERY\\nTIMESTAMP\\nBODY` (path relative to the
  sandbox base), checked with the merchant's registered public key; a bad one is 401. Every
  answer is JSON `{"code": "SUCCESS" | ERROR_CODE, ...}` (the bill: CSV) signed by the channel
  key in `Sandbox-Signature` over `TIMESTAMP\\nBODY`, with `Sandbox-Timestamp`.
Buyer page (unsigned): GET /pay/{txn_no}, POST /pay/{txn_no}/succeed, POST /pay/{txn_no}/fail.
Operator (unsigned, like a channel's console; do not expose publicly):
  POST /api/merchants {platform_public_key_pem, reuse_existing?} -> {mch_id, channel_public_key_pem};
  POST /faults, GET /faults, DELETE /faults; POST /bill/extra {date, amount}; GET /health.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from piaohao.kernel.clock import Clock

from . import mandates, rsa
from .faults import WIRE_KINDS, Fault
from .money_ops import refund_trade_key
from .page import page, settle
from .service import DEFAULT_TZ, SandboxService
from .store import SandboxStore
from .wire import (
    BODY_BYTES_MAX,
    HEADER_MCH_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    TIMESTAMP_SKEW_S_MAX,
    SandboxError,
    dumps,
    loads_object,
    request_canonical,
    response_canonical,
)

__all__ = ["create_sandbox_app", "BANK_TIMEOUT_DELAY_S_DEFAULT"]

log = structlog.get_logger(__name__)

# How long the `0003` bank account's first payout answer is held back: past any sane client timeout.
BANK_TIMEOUT_DELAY_S_DEFAULT = 15.0

# What each handler returns: the answer (a dict for JSON, bytes for CSV) and whether to lose it.
Handler = Callable[[SandboxService, str, dict, Request], tuple[dict | bytes, bool]]


def _path_and_query(request: Request) -> str:
    """The request path relative to the sandbox's mount point, plus its raw query string."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        path = path[len(root):]
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _signed(svc: SandboxService, status: int, payload: dict | bytes, *, bad: bool = False) -> Response:
    """An answer signed with the channel's private key (`bad`: with a signature that will not verify)."""
    body = payload if isinstance(payload, bytes) else dumps(payload)
    media_type = "text/csv; charset=utf-8" if isinstance(payload, bytes) else "application/json"
    timestamp = str(int(svc.clock.now().timestamp()))
    signed_bytes = response_canonical(timestamp, body)
    signature = rsa.sign(svc.store.channel_keys().private_pem, b"tampered" + signed_bytes if bad else signed_bytes)
    return Response(body, status_code=status, media_type=media_type,
                    headers={HEADER_TIMESTAMP: timestamp, HEADER_SIGNATURE: signature})


def _authenticate(svc: SandboxService, request: Request, body: bytes) -> str:
    """The calling merchant's id, once its signature and timestamp check out."""
    mch_id = request.headers.get(HEADER_MCH_ID, "")
    timestamp = request.headers.get(HEADER_TIMESTAMP, "")
    signature = request.headers.get(HEADER_SIGNATURE, "")
    public_pem = svc.store.merchant_public_key(mch_id) if mch_id else None
    if public_pem is None:
        raise SandboxError(401, "UNKNOWN_MERCHANT", "unknown or missing Sandbox-Mch-Id")
    if not timestamp.isdigit() or abs(svc.clock.now().timestamp() - int(timestamp)) > TIMESTAMP_SKEW_S_MAX:
        raise SandboxError(401, "TIMESTAMP_EXPIRED", "Sandbox-Timestamp missing or more than 300 s off")
    canonical = request_canonical(request.method, _path_and_query(request), timestamp, body)
    if not rsa.verify(public_pem, canonical, signature):
        raise SandboxError(401, "INVALID_SIGNATURE", "signature does not verify")
    return mch_id


def _ok(record: dict) -> dict:
    return {"code": "SUCCESS", **record}


def _bill_date(request: Request) -> date:
    try:
        return date.fromisoformat(request.query_params.get("date", ""))
    except ValueError as e:
        raise SandboxError(400, "INVALID_PARAM", "date must be YYYY-MM-DD") from e


def _payout(svc: SandboxService, mch_id: str, data: dict, _r: Request) -> tuple[dict, bool]:
    record, lose_answer = svc.payout(mch_id, data)
    return _ok(record), lose_answer


# op name (as faults know it) -> (method, handler, what per-payment faults match)
API: dict[str, tuple[str, Handler, Callable[[SandboxService, str, dict], str | None]]] = {
    "pay": ("POST", lambda s, m, d, r: (_ok(s.pay(m, d)), False), lambda s, m, d: d.get("out_trade_no")),
    "query": ("POST", lambda s, m, d, r: (_ok(s.query(m, d)), False), lambda s, m, d: d.get("out_trade_no")),
    "close": ("POST", lambda s, m, d, r: (_ok(s.close(m, d)), False), lambda s, m, d: d.get("out_trade_no")),
    "refund": ("POST", lambda s, m, d, r: (_ok(s.refund(m, d)), False), lambda s, m, d: d.get("out_trade_no")),
    "refund_query": ("POST", lambda s, m, d, r: (_ok(s.refund_query(m, d)), False), refund_trade_key),
    "payout": ("POST", _payout, lambda s, m, d: d.get("out_payout_no")),
    "payout_query": ("POST", lambda s, m, d, r: (_ok(s.payout_query(m, d)), False),
                     lambda s, m, d: d.get("out_payout_no")),
    "card_bind": ("POST", lambda s, m, d, r: (_ok(s.bind_card(m, d)), False), lambda s, m, d: None),
    "card_confirm": ("POST", lambda s, m, d, r: (_ok(s.confirm_card(m, d)), False), lambda s, m, d: None),
    "card_unbind": ("POST", lambda s, m, d, r: (_ok(s.unbind_card(m, d)), False), lambda s, m, d: None),
    "mandate_create": ("POST", lambda s, m, d, r: (_ok(s.create_mandate(m, d)), False), lambda s, m, d: None),
    "mandate_query": ("POST", lambda s, m, d, r: (_ok(s.query_mandate(m, d)), False), lambda s, m, d: None),
    "mandate_terminate": ("POST", lambda s, m, d, r: (_ok(s.terminate_mandate(m, d)), False),
                          lambda s, m, d: None),
    "bill": ("GET", lambda s, m, d, r: (s.bill(m, _bill_date(r)), False), lambda s, m, d: None),
}
PATHS = {"pay": "/api/pay", "query": "/api/query", "close": "/api/close", "refund": "/api/refund",
         "refund_query": "/api/refund/query", "payout": "/api/payout", "payout_query": "/api/payout/query",
         "bill": "/api/bill", "card_bind": "/api/card/bind", "card_confirm": "/api/card/confirm",
         "card_unbind": "/api/card/unbind", "mandate_create": "/api/mandate/create",
         "mandate_query": "/api/mandate/query", "mandate_terminate": "/api/mandate/terminate"}


def _endpoint(op: str):
    _method, handler, key_of = API[op]

    async def endpoint(request: Request) -> Response:
        svc: SandboxService = request.app.state.sandbox
        body = await request.body()
        fault: Fault | None = None
        lose_answer = False
        try:
            if len(body) > BODY_BYTES_MAX:
                raise SandboxError(413, "BODY_TOO_LARGE", "request body too large")
            mch_id = await run_in_threadpool(_authenticate, svc, request, body)
            data = loads_object(body)
            key = await run_in_threadpool(key_of, svc, mch_id, data)
            fault = await run_in_threadpool(svc.faults.take, op, key if isinstance(key, str) else None, WIRE_KINDS)
            if fault is not None:
                log.info("sandbox.fault", op=op, kind=fault.kind, delay_s=fault.delay_s)
            if fault is not None and fault.kind == "error":
                return JSONResponse({"code": "SYSTEM_ERROR", "msg": "injected fault"}, status_code=500)
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.delay_s)
            payload, lose_answer = await run_in_threadpool(handler, svc, mch_id, data, request)
            status = 200
        except SandboxError as e:
            status, payload = e.status, e.body()
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
        if lose_answer:
            await asyncio.sleep(request.app.state.bank_timeout_delay_s)
        return _signed(svc, status, payload, bad=fault is not None and fault.kind == "bad_signature")

    return endpoint


async def _onboard(request: Request) -> Response:
    svc: SandboxService = request.app.state.sandbox
    try:
        data = loads_object(await request.body())
        answer = await run_in_threadpool(lambda: svc.onboard(data.get("platform_public_key_pem"),
                                                             reuse_existing=data.get("reuse_existing") is True))
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)
    return JSONResponse(answer, status_code=201)


async def _faults(request: Request) -> Response:
    svc: SandboxService = request.app.state.sandbox
    try:
        if request.method == "POST":
            data = loads_object(await request.body())
            fault = await run_in_threadpool(svc.faults.add, data, svc.clock.now())
            return JSONResponse(fault.to_json(), status_code=201)
        if request.method == "DELETE":
            return JSONResponse({"cleared": await run_in_threadpool(svc.clear_faults)})
        return JSONResponse({"faults": [f.to_json() for f in await run_in_threadpool(svc.list_faults)]})
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)


async def _bill_extra(request: Request) -> Response:
    """`POST /bill/extra {"date": "YYYY-MM-DD", "amount": n}`: a payment no merchant made, on that day's bill."""
    svc: SandboxService = request.app.state.sandbox
    try:
        data = loads_object(await request.body())
        return JSONResponse(await run_in_threadpool(svc.bill_extra, data), status_code=201)
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)


async def _health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_sandbox_app(store: SandboxStore, *, public_base_url: str, clock: Clock | None = None,
                       tz: str = DEFAULT_TZ, bank_timeout_delay_s: float = BANK_TIMEOUT_DELAY_S_DEFAULT) -> Starlette:
    """The sandbox as an ASGI app. `public_base_url` is the absolute URL it is reachable at
    (e.g. `http://127.0.0.1:8000/sandbox`); `tz` is its bills' business day. The service object
    (onboarding, faults, buyer actions as Python calls) is `app.state.sandbox`."""
    svc = SandboxService(store, public_base_url=public_base_url, clock=clock, tz=tz)
    store.channel_keys()  # make the key pair now, not inside the first request
    routes = [Route(PATHS[op], _endpoint(op), methods=[API[op][0]]) for op in API]
    routes += [
        Route("/api/merchants", _onboard, methods=["POST"]),
        Route("/faults", _faults, methods=["GET", "POST", "DELETE"]),
        Route("/bill/extra", _bill_extra, methods=["POST"]),
        Route("/health", _health, methods=["GET"]),
        Route("/pay/{txn_no}", page, methods=["GET"]),
        Route("/pay/{txn_no}/succeed", settle, methods=["POST"]),
        Route("/pay/{txn_no}/fail", settle, methods=["POST"]),
        Route("/sign/{mandate_id}", mandates.page, methods=["GET"]),
        *[Route(f"/sign/{{mandate_id}}/{a}", mandates.act, methods=["POST"]) for a in ("sign", "reject", "terminate")],
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = svc
    app.state.bank_timeout_delay_s = bank_timeout_delay_s
    return app
