"""The cashier (收銀台): the buyer's page for a trade, and its JSON twin."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, JSONResponse

from piaohao.api.deps import platform
from piaohao.api.schemas import PayBody
from piaohao.clock import rfc3339
from piaohao.platform import Platform
from piaohao.services.payments import find_trade_by_token, start_payment

router = APIRouter(prefix="/cashier", tags=["cashier"])

METHOD_NAMES = {"sandbox": "Sandbox channel (test payments)"}


def _methods(p: Platform) -> list[dict]:
    return [{"method": name, "name": METHOD_NAMES.get(name, name), "kind": "channel"} for name in p.channels]


@router.get("/{token}")
def cashier_page(token: str, request: Request, p: Platform = Depends(platform)):
    trade = find_trade_by_token(p, token)
    view = {
        "trade_no": trade["trade_no"], "subject": trade["subject"], "amount": trade["amount"],
        "currency": trade["currency"], "status": trade["status"],
        "expires_at": rfc3339(trade["expires_at"], p.settings.tz), "methods": _methods(p),
    }
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(view)
    buttons = "".join(
        f'<button onclick="pay(\'{html.escape(m["method"])}\')">{html.escape(m["name"])}</button>'
        for m in view["methods"])
    page = f"""<!doctype html><meta charset="utf-8"><title>Pay {html.escape(trade['subject'])}</title>
<h1>{html.escape(trade['subject'])}</h1><p>{trade['amount']} (minor units) {html.escape(trade['currency'])}
 &middot; {html.escape(trade['status'])}</p>{buttons}
<script>async function pay(m){{const r=await fetch(location.pathname.replace(/\\/$/,'')+'/pay',{{method:'POST',
headers:{{'Content-Type':'application/json'}},body:JSON.stringify({{method:m}})}});const j=await r.json();
if(j.redirect_url)location.href=j.redirect_url;else alert(j.message||j.status);}}</script>"""
    return HTMLResponse(page)


@router.post("/{token}/pay")
def pay(token: str, body: PayBody, p: Platform = Depends(platform)):
    return start_payment(p, token, body.method)
