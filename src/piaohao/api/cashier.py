"""The cashier (收銀台): the buyer's page for a trade, and its JSON twin.

`GET {pay_url}` is the page (or, with `Accept: application/json`, the JSON twin of API.md);
`POST {pay_url}/pay` the JSON twin's pay. The page's plain forms post to `POST {pay_url}/form`,
which calls the same use case and answers as a browser expects: 303 to the channel's page, the QR
page, or 303 to `{pay_url}/result`, which shows the trade's real status before following
`return_url`. The HTML itself is drawn by `piaohao.web.cashier`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from piaohao.api.deps import platform
from piaohao.api.errors import status_of
from piaohao.api.schemas import CreateTradeBody, PayBody
from piaohao.kernel.errors import InvalidComponents, PiaohaoError
from piaohao.platform import Platform
from piaohao.services import cashier, payinfo
from piaohao.services.trades import NewTrade
from piaohao.web import cashier as pages

router = APIRouter(prefix="/cashier", tags=["cashier"])
COMPONENTS_MAX = 4


# The cashier's pages take payment passwords: never framed by another site (clickjacking), scripts
# and fetches from ourselves only, and never kept by the browser, so Back shows the trade as it is now.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.get("/{token}")
def cashier_page(token: str, request: Request, p: Platform = Depends(platform)):
    return _show(token, request, p)


def _show(token: str, request: Request, p: Platform):
    if _wants_json(request):
        return JSONResponse(cashier.cashier_view(p, token))
    try:
        view = cashier.page_view(p, token)
    except PiaohaoError as exc:
        return _html(pages.problem_page(exc), status_of(exc))
    return _html(pages.cashier_page(view))


def _parse_payinfo(data: dict) -> NewTrade:
    """The order system's PayInfo answer, read exactly as a `POST /v1/trades` body (ValueError if not)."""
    return NewTrade(**CreateTradeBody.model_validate(data).model_dump())


@router.get("/orders/{app_id}/{out_trade_no}")
def order_page(app_id: str, out_trade_no: str, request: Request, p: Platform = Depends(platform)):
    """Pull mode: the cashier by the merchant's order number; the first open asks the order system."""
    try:
        trade = payinfo.open_order(p, app_id, out_trade_no, _parse_payinfo)
    except PiaohaoError as exc:
        if _wants_json(request):
            raise
        return _html(pages.problem_page(exc), status_of(exc))
    return _show(trade["cashier_token"], request, p)


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


@router.post("/{token}/form", include_in_schema=False)
async def pay_form(token: str, request: Request, p: Platform = Depends(platform)):
    """The page's forms, without JavaScript: the pay use case, answered with a page or a redirect."""
    form = await request.form()
    return await run_in_threadpool(_pay_form, token, form, request.client.host if request.client else None, p)


def _pay_form(token: str, form, client_ip: str | None, p: Platform):
    form_id = ""
    try:
        asked = pages.read_form(form)
        form_id = asked.form_id
        if asked.method is None and asked.components is None:
            raise InvalidComponents("choose a way to pay")
        answer = cashier.pay(p, token, method=asked.method, components=asked.components,
                             payment_password=asked.payment_password, client_ip=client_ip, bank=asked.bank,
                             card_id=asked.card_id)
    except PiaohaoError as exc:
        try:
            view = cashier.page_view(p, token)
        except PiaohaoError as missing:
            return _html(pages.problem_page(missing), status_of(missing))
        return _html(pages.cashier_page(view, error=pages.error_text(exc, view), error_form=form_id),
                     status_of(exc))
    action = answer.get("next_action") or {}
    if action.get("type") == "redirect":
        return RedirectResponse(action["url"], status_code=303)
    if action.get("type") == "qr_code":
        view = cashier.page_view(p, token)
        return _html(pages.qr_page(view, action["code_url"], asked.method or ""))
    # Paid at once, processing (a bound card), or an action a browser page cannot take: the result
    # page shows the trade's real state.
    return RedirectResponse(f"/cashier/{token}/result", status_code=303)


@router.get("/{token}/result", include_in_schema=False)
def result(token: str, p: Platform = Depends(platform)):
    """Where the buyer comes back from the channel: the trade's own status, never the return's word."""
    try:
        view = cashier.page_view(p, token)
    except PiaohaoError as exc:
        return _html(pages.problem_page(exc), status_of(exc))
    return _html(pages.result_page(view))
