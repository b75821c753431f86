"""The sandbox's mandates (agreement pay, 代扣), imitating the gaps research part D names: signing,
refusal, the buyer's termination and expiry are **never notified**; the merchant learns them by
querying (`/api/mandate/query`).

Signed API: `POST /api/mandate/create` {out_mandate_no, max_amount, currency} → WAIT_SIGN with
`sign_url`; `/api/mandate/query` and `/api/mandate/terminate` {out_mandate_no}. Buyer page
(unsigned): `GET /sign/{mandate_id}`, `POST /sign/{mandate_id}/sign`, `/reject`, `/terminate`.
A debit is `/api/pay` with `mandate_no`: paid at once when the mandate is SIGNED and the amount
within `max_amount`, otherwise the payment FAILED (refused).
"""

from __future__ import annotations

import html

import structlog
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .wire import SandboxError, new_number, require_amount, require_currency, require_key

__all__ = ["create", "query", "terminate", "buyer_action", "debit_allowed", "page", "act"]

log = structlog.get_logger(__name__)

WAIT_SIGN, SIGNED, REJECTED, TERMINATED = "WAIT_SIGN", "SIGNED", "REJECTED", "TERMINATED"
# (status, event) -> new status: the only way a mandate changes.
TRANSITIONS = {
    (WAIT_SIGN, "sign"): SIGNED, (WAIT_SIGN, "reject"): REJECTED,
    (SIGNED, "terminate"): TERMINATED, (WAIT_SIGN, "terminate"): TERMINATED,
}


def _json(svc, row) -> dict:
    return {"mandate_id": row.mandate_id, "out_mandate_no": row.out_mandate_no, "max_amount": row.max_amount,
            "currency": row.currency, "status": row.status, "sign_url": f"{svc.public_base_url}/sign/{row.mandate_id}"}


def _by_out(svc, conn: Connection, mch_id: str, out_mandate_no: str):
    t = svc.t.mandates
    return conn.execute(select(t).where(t.c.mch_id == mch_id, t.c.out_mandate_no == out_mandate_no)).first()


def create(svc, mch_id: str, data: dict) -> dict:
    out_mandate_no = require_key(data, "out_mandate_no")
    max_amount = require_amount(data, "max_amount")
    currency = require_currency(data)
    now = svc.clock.now()

    def work(conn: Connection) -> dict:
        row = _by_out(svc, conn, mch_id, out_mandate_no)
        if row is None:
            conn.execute(insert(svc.t.mandates).values(
                mandate_id=new_number("G", now), mch_id=mch_id, out_mandate_no=out_mandate_no, max_amount=max_amount,
                currency=currency, status=WAIT_SIGN, created_at=now, updated_at=now))
            row = _by_out(svc, conn, mch_id, out_mandate_no)
        return _json(svc, row)

    try:
        return svc.store.write(work)
    except IntegrityError:
        return svc.store.write(work)


def query(svc, mch_id: str, data: dict) -> dict:
    out_mandate_no = require_key(data, "out_mandate_no")
    with svc.store.read() as conn:
        row = _by_out(svc, conn, mch_id, out_mandate_no)
    if row is None:
        raise SandboxError(404, "MANDATE_NOT_EXIST", "no such mandate")
    return _json(svc, row)


def _change(svc, conn: Connection, row, event: str) -> None:
    new = TRANSITIONS.get((row.status, event))
    if new is not None:
        conn.execute(update(svc.t.mandates).where(svc.t.mandates.c.mandate_id == row.mandate_id,
                                                  svc.t.mandates.c.status == row.status).values(
            status=new, updated_at=svc.clock.now()))


def terminate(svc, mch_id: str, data: dict) -> dict:
    out_mandate_no = require_key(data, "out_mandate_no")

    def work(conn: Connection) -> dict:
        row = _by_out(svc, conn, mch_id, out_mandate_no)
        if row is None:
            raise SandboxError(404, "MANDATE_NOT_EXIST", "no such mandate")
        _change(svc, conn, row, "terminate")
        return _json(svc, _by_out(svc, conn, mch_id, out_mandate_no))

    return svc.store.write(work)


def buyer_action(svc, mandate_id: str, event: str | None) -> dict:
    """The buyer on the sign page: `sign`, `reject`, `terminate` (ends it at the channel), or None to look."""
    t = svc.t.mandates

    def work(conn: Connection) -> dict:
        row = conn.execute(select(t).where(t.c.mandate_id == mandate_id)).first()
        if row is None:
            raise SandboxError(404, "MANDATE_NOT_EXIST", "no such mandate")
        if event is not None:
            if (row.status, event) not in TRANSITIONS:
                raise SandboxError(409, "MANDATE_STATUS_ERROR", f"mandate is {row.status}", _json(svc, row))
            _change(svc, conn, row, event)
            log.info("sandbox.mandate.buyer", mandate_id=mandate_id, action=event)
            row = conn.execute(select(t).where(t.c.mandate_id == mandate_id)).first()
        return _json(svc, row)

    return svc.store.write(work)


def debit_allowed(svc, mch_id: str, mandate_no: object, amount: int) -> bool:
    """Whether a debit under `mandate_no` would be paid (signed, within the per-debit limit)."""
    if not isinstance(mandate_no, str):
        raise SandboxError(400, "INVALID_PARAM", "mandate_no must be a string")
    with svc.store.read() as conn:
        row = _by_out(svc, conn, mch_id, mandate_no)
    if row is None:
        raise SandboxError(400, "MANDATE_NOT_EXIST", "no such mandate")
    return row.status == SIGNED and amount <= row.max_amount


async def page(request: Request) -> Response:
    svc = request.app.state.sandbox
    try:
        m = await run_in_threadpool(buyer_action, svc, request.path_params["mandate_id"], None)
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(m)
    base = html.escape(m["sign_url"])
    buttons = "".join(f'<form method="post" action="{base}/{a}"><button>{a}</button></form>'
                      for a in ("sign", "reject", "terminate"))
    return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>Sign a debit agreement</title>"
                        f"<h1>Debit agreement</h1><p>At most {m['max_amount']} (minor units, "
                        f"{html.escape(m['currency'])}) per debit</p><p>Status: <b>{html.escape(m['status'])}</b>"
                        f"</p>{buttons}")


async def act(request: Request) -> Response:
    svc = request.app.state.sandbox
    event = request.url.path.rsplit("/", 1)[1]
    try:
        m = await run_in_threadpool(buyer_action, svc, request.path_params["mandate_id"], event)
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)
    return JSONResponse({"code": "SUCCESS", **m})
