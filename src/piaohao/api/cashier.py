"""The cashier (收銀台): the buyer's page for a trade, and its JSON twin."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, JSONResponse

from piaohao.api.deps import platform
from piaohao.api.schemas import PayBody
from piaohao.kernel.errors import InvalidComponents
from piaohao.platform import Platform
from piaohao.services import cashier

router = APIRouter(prefix="/cashier", tags=["cashier"])


@router.get("/{token}")
def cashier_page(token: str, request: Request, p: Platform = Depends(platform)):
    view = cashier.cashier_view(p, token)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(view)
    buttons = "".join(
        f'<button onclick="pay(\'{html.escape(m["method"])}\')">{html.escape(m["name"])}</button>'
        for m in view["methods"] if m["kind"] == "channel")
    page = f"""<!doctype html><meta charset="utf-8"><title>Pay {html.escape(view['subject'])}</title>
<h1>{html.escape(view['subject'])}</h1><p>{view['amount']} (minor units) {html.escape(view['currency'])}
 &middot; {html.escape(view['status'])}</p>{buttons}
<script>async function pay(m){{const r=await fetch(location.pathname.replace(/\\/$/,'')+'/pay',{{method:'POST',
headers:{{'Content-Type':'application/json'}},body:JSON.stringify({{method:m}})}});const j=await r.json();
if(j.redirect_url)location.href=j.redirect_url;else alert(j.message||j.status);}}</script>"""
    return HTMLResponse(page)


@router.post("/{token}/pay")
def pay(token: str, body: PayBody, request: Request, p: Platform = Depends(platform)):
    components = [(c.method, c.amount) for c in body.components] if body.components is not None else None
    if (body.method is None) == (components is None):
        raise InvalidComponents("give either method or components")
    return cashier.pay(p, token, method=body.method, components=components, payment_password=body.payment_password,
                       openid=body.openid, client_ip=request.client.host if request.client else None,
                       bank=body.bank, card_id=body.card_id)
