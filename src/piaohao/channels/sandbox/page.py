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

from piaohao.kernel.money import format_major

from .service import SandboxService
from .wire import BODY_BYTES_MAX, NOTIFY_MODES, SandboxError, loads_object

__all__ = ["page", "settle"]

FORM_TYPE = "application/x-www-form-urlencoded"


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


# The sandbox is "another company" and may run on its own host: its page carries its own few styles.
_STYLE = ("body{font-family:system-ui,sans-serif;margin:0;background:#f6f6f4;color:#1a1a1a;line-height:1.5}"
          "main{max-width:30rem;margin:0 auto;padding:1rem}.card{background:#fff;border:1px solid #d0d0d0;"
          "border-radius:.5rem;padding:1rem;margin:0 0 1rem}.amount{font-size:2rem;font-weight:700;margin:.25rem 0}"
          ".muted{color:#555}label{display:block;font-weight:600;margin:.5rem 0 .25rem}select,button{min-height:44px;"
          "font-size:1rem;width:100%}button{border:0;border-radius:.4rem;background:#17612e;color:#fff;margin-top:.5rem}"
          "button.fail{background:#a3161a}:focus-visible{outline:3px solid #f0a000;outline-offset:2px}")


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>{body}</main></body></html>")


def _render(p: dict, svc: SandboxService) -> str:
    e = html.escape
    base = f"{svc.public_base_url}/pay/{e(p['txn_no'])}"
    options = "".join(f'<option value="{m}">{m}</option>' for m in NOTIFY_MODES)
    buttons = ""
    if p["status"] == "WAIT_PAY":
        buttons = (
            f'<form method="post" action="{base}/succeed"><label for="notify">Notify the platform</label>'
            f'<select id="notify" name="notify">{options}</select><button type="submit">Pay</button></form>'
            f'<form method="post" action="{base}/fail"><button type="submit" class="fail">Fail</button></form>'
        )
    title = p["bank"] + " online banking" if p.get("bank") else "Sandbox cashier"
    amount = f"{format_major(p['amount'], p['currency'])} {p['currency']}"
    return _page(title, (
        f"<div class='card'><p class='muted'>Test payments only: no real money moves.</p><h1>{e(title)}</h1>"
        f"<p>{e(p['subject'])}</p><p class='amount'>{e(amount)}</p>"
        f"<p class='muted'>{p['amount']} minor units · status <b>{e(p['status'])}</b></p></div>"
        f"<div class='card'>{buttons or '<p>Nothing to pay.</p>'}</div>"))


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
        return HTMLResponse(_page("Sandbox cashier", f"<div class='card'><h1>Payment {status}.</h1>{link}</div>"))
    return JSONResponse({"code": "SUCCESS", **p})
