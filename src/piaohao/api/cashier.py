"""The cashier (收銀台): the buyer's page for a trade, and its JSON twin."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, JSONResponse

from piaohao.api.deps import platform
from piaohao.api.errors import status_of
from piaohao.api.schemas import CreateTradeBody, PayBody
from piaohao.kernel.errors import InvalidComponents, PiaohaoError
from piaohao.platform import Platform
from piaohao.services import cashier, payinfo
from piaohao.services.trades import NewTrade

router = APIRouter(prefix="/cashier", tags=["cashier"])
COMPONENTS_MAX = 4


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.get("/{token}")
def cashier_page(token: str, request: Request, p: Platform = Depends(platform)):
    return _show(cashier.cashier_view(p, token), request)


def _show(view: dict, request: Request):
    if _wants_json(request):
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


def _parse_payinfo(data: dict) -> NewTrade:
    """The order system's PayInfo answer, read exactly as a `POST /v1/trades` body (ValueError if not)."""
    return NewTrade(**CreateTradeBody.model_validate(data).model_dump())


@router.get("/orders/{app_id}/{out_trade_no}")
def order_page(app_id: str, out_trade_no: str, request: Request, p: Platform = Depends(platform)):
    """Pull mode: the cashier by the merchant's order number; the first open asks the order system."""
    try:
        trade = payinfo.open_order(p, app_id, out_trade_no, _parse_payinfo)
        return _show(cashier.cashier_view(p, trade["cashier_token"]), request)
    except PiaohaoError as exc:
        if _wants_json(request):
            raise
        return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>Cannot pay this order</title>"
                            f"<h1>Cannot pay this order</h1><p>{html.escape(exc.message)}</p>"
                            f"<p><small>{html.escape(exc.code)}</small></p>", status_code=status_of(exc))


@router.post("/orders/{app_id}/{out_trade_no}/pay")
def pay_order(app_id: str, out_trade_no: str, body: PayBody, request: Request, p: Platform = Depends(platform)):
    trade = payinfo.open_order(p, app_id, out_trade_no, _parse_payinfo)
    return pay(trade["cashier_token"], body, request, p)


@router.post("/{token}/pay")
def pay(token: str, body: PayBody, request: Request, p: Platform = Depends(platform)):
    components = [(c.method, c.amount) for c in body.components] if body.components is not None else None
    if (body.method is None) == (components is None):
        raise InvalidComponents("give either method or components")
    if components is not None and not 1 <= len(components) <= COMPONENTS_MAX:
        raise InvalidComponents(f"components must list 1-{COMPONENTS_MAX} methods")
    return cashier.pay(p, token, method=body.method, components=components, payment_password=body.payment_password,
                       openid=body.openid, client_ip=request.client.host if request.client else None,
                       bank=body.bank, card_id=body.card_id)
