"""The buyer's side of the sandbox: the page a buyer is redirected to, and its two buttons.

`GET /pay/{txn_no}` shows the payment (HTML, or JSON with `Accept: application/json`);
`POST /pay/{txn_no}/succeed` and `/fail` settle it. Their optional body (JSON, or the page's
form) `{"notify": MODE, "notify_delay_s": N}` picks how the merchant is notified (API.md,
"Sandbox faults"). These routes are unsigned: anyone holding the page URL is "the buyer".
"""

from __future__ import annotations

import html
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .service import SandboxService
from .wire import BODY_BYTES_MAX, NOTIFY_MODES, SandboxError, loads_object

__all__ = ["page", "settle"]

FORM_TYPE = "application/x-www-form-urlencoded"


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _render(p: dict, svc: SandboxService) -> str:
    e = html.escape
    base = f"{svc.public_base_url}/pay/{e(p['txn_no'])}"
    options = "".join(f'<option value="{m}">{m}</option>' for m in NOTIFY_MODES)
    buttons = ""
    if p["status"] == "WAIT_PAY":
        buttons = (
            f'<form method="post" action="{base}/succeed"><label>notify <select name="notify">{options}</select>'
            f'</label> <button type="submit">Pay</button></form>'
            f'<form method="post" action="{base}/fail"><button type="submit">Fail</button></form>'
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sandbox cashier</title></head><body>"
        f"<h1>{e(p['bank'] + ' online banking') if p.get('bank') else 'Sandbox cashier'}</h1>"
        f"<p>{e(p['subject'])}</p>"
        f"<p>Amount: {p['amount']} (minor units, {e(p['currency'])})</p>"
        f"<p>Status: <b>{e(p['status'])}</b></p>{buttons}</body></html>"
    )


async def page(request: Request) -> Response:
    svc: SandboxService = request.app.state.sandbox
    try:
        p = await run_in_threadpool(svc.page, request.path_params["txn_no"])
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)
    if _wants_json(request):
        base = f"{svc.public_base_url}/pay/{p['txn_no']}"
        return JSONResponse({**p, "succeed_url": f"{base}/succeed", "fail_url": f"{base}/fail",
                             "notify_modes": list(NOTIFY_MODES)})
    return HTMLResponse(_render(p, svc))


async def _options(request: Request) -> dict:
    body = await request.body()
    if len(body) > BODY_BYTES_MAX:
        raise SandboxError(413, "BODY_TOO_LARGE", "request body too large")
    if request.headers.get("content-type", "").startswith(FORM_TYPE):
        form = dict(parse_qsl(body.decode("utf-8", "replace")))  # the page's own form; no multipart
        data: dict = {}
        if form.get("notify"):
            data["notify"] = form["notify"]
        if form.get("bill"):
            data["bill"] = form["bill"]
        if form.get("notify_delay_s"):
            try:
                data["notify_delay_s"] = float(form["notify_delay_s"])
            except ValueError as e:
                raise SandboxError(400, "INVALID_PARAM", "notify_delay_s must be a number") from e
        return data
    return loads_object(body)


async def settle(request: Request) -> Response:
    """`POST /pay/{txn_no}/succeed` or `/fail` (the last path segment says which)."""
    svc: SandboxService = request.app.state.sandbox
    txn_no = request.path_params["txn_no"]
    from_form = request.headers.get("content-type", "").startswith(FORM_TYPE)
    try:
        data = await _options(request)
        action = svc.succeed if request.url.path.endswith("/succeed") else svc.fail
        p = await run_in_threadpool(action, txn_no, data)
    except SandboxError as e:
        return JSONResponse(e.body(), status_code=e.status)
    if from_form and not _wants_json(request):
        back = await run_in_threadpool(svc.return_url, txn_no)
        link = f'<p><a href="{html.escape(back)}">Back to the merchant</a></p>' if back else ""
        status = html.escape(p["status"])
        return HTMLResponse(f"<!doctype html><html><body><p>Payment {status}.</p>{link}</body></html>")
    return JSONResponse({"code": "SUCCESS", **p})
