"""The operator console at `/console` (docs/console.md): server-rendered pages over the same use
cases as the CLI (`services.operations`, `recon.findings`), for operators signed in with a role.

Its own small ASGI app, mounted by `api/app.py`: the signing gateway only checks `/v1`, and the
limits middleware in front keeps the 64 KiB body limit and NUL checks for every console request.

- Sign-in (`/console/login`) sets a session cookie: HttpOnly, SameSite=Strict, Path=/console, and
  Secure when PIAOHAO_BASE_URL is https. The login form itself carries a one-off token that must
  match a pre-login cookie (no login CSRF).
- Every POST carries the session's CSRF token in a hidden field (compared in constant time);
  without it, or with a wrong one, the answer is 403 and nothing changes.
- A viewer sees every page but no action button, and an action it posts anyway is refused (403).
- Every action names the signed-in operator in the audit log (the use cases write it).
- Pages are never cached and never framed; the Content-Security-Policy allows no script at all.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse

from piaohao.api.errors import status_of
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import NotPermitted, OperatorLocked, PiaohaoError, SignInRefused
from piaohao.platform import Platform
from piaohao.recon import findings
from piaohao.services import operations, operators
from piaohao.services.operators import Operator
from piaohao.web import console_queries as queries
from piaohao.web.assets import render
from piaohao.web.console_charts import console_charts

__all__ = ["BASE", "COOKIE", "create_console"]

BASE = "/console"
COOKIE = "piaohao_console"
LOGIN_COOKIE = "piaohao_console_login"  # the pre-login token the sign-in form must echo
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [(b"cache-control", b"no-store"), (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", CSP.encode()), (b"referrer-policy", b"same-origin"),
                    (b"x-content-type-options", b"nosniff")]
DONE = {"alert.resolve": "Alert resolved.", "finding.resolve": "Finding resolved.",
        "notification.resend": "Notification queued for delivery again.", "refund.retry": "Refund re-driven.",
        "payout.retry": "Payout re-driven."}

router = APIRouter()


class SignInNeeded(Exception):
    """No live session: a page sends the browser to the sign-in form, an action is refused."""


@dataclass(frozen=True)
class Signed:
    operator: Operator
    token: str

    @property
    def csrf(self) -> str:
        return operators.csrf_token(self.token)


def _p(request: Request) -> Platform:
    return request.app.state.platform


def _secure(p: Platform) -> bool:
    return p.settings.base_url.lower().startswith("https://")


def signed_in(request: Request) -> Signed:
    token = request.cookies.get(COOKIE)
    operator = operators.session_operator(_p(request), token)
    if operator is None:
        raise SignInNeeded()
    return Signed(operator, token)


async def acting(request: Request) -> Signed:
    """An action: a live session, the form's CSRF token, and a role that may act."""
    signed = await run_in_threadpool(signed_in, request)
    form = await request.form()
    if not operators.csrf_matches(signed.token, form.get("csrf_token")):
        raise NotPermitted("the form's CSRF token is missing or wrong: reload the page and try again")
    if not signed.operator.may_act:
        raise NotPermitted(f"{signed.operator.name} is a viewer: viewers can look but not act")
    return signed


def _when(p: Platform):
    tz = p.settings.tz

    def fmt(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, str):  # some use cases answer RFC 3339 text already
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        return (rfc3339(value, tz) or "-").replace("T", " ")

    return fmt


def _back(value: str | None, default: str) -> str:
    """Only a console path: never an open redirect to another site."""
    if value and value.startswith(BASE + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def _done(path: str, code: str) -> RedirectResponse:
    path = path.split("#")[0]
    joiner = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{joiner}done={quote(code)}", status_code=303)


def _page(request: Request, signed: Signed, template: str, status: int = 200, **ctx) -> HTMLResponse:
    p = _p(request)
    kept = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "done"])
    here = request.url.path + (f"?{kept}" if kept else "")
    html = render(f"console/{template}", me=signed.operator, csrf=signed.csrf, base=BASE, when=_when(p), here=here,
                  done=DONE.get(request.query_params.get("done", "")), query=_query, **ctx)
    return HTMLResponse(html, status_code=status)


def _query(filters: dict, **changes) -> str:
    values = {k: v for k, v in {**filters, **changes}.items() if v not in (None, "", False)}
    return urlencode(values)


# --- sign-in ----------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = ""):
    p = _p(request)
    if operators.session_operator(p, request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(_back(next, BASE + "/"), status_code=303)
    return _login_page(request, next)


def _login_page(request: Request, next_path: str, error: str = "", status: int = 200) -> HTMLResponse:
    login_token = secrets.token_urlsafe(24)
    response = HTMLResponse(render("console/login.html", base=BASE, login_token=login_token, error=error,
                                   next=_back(next_path, "")), status_code=status)
    response.set_cookie(LOGIN_COOKIE, login_token, httponly=True, samesite="strict", secure=_secure(_p(request)),
                        path=BASE)
    return response


@router.post("/login")
def login(request: Request, name: str = Form(""), password: str = Form(""), login_token: str = Form(""),
          next: str = Form("")):
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), login_token.encode()):
        raise NotPermitted("the sign-in form is stale or was not sent by this console: reload it")
    p = _p(request)
    try:
        _operator, token = operators.sign_in(p, name, password)
    except SignInRefused as exc:
        return _login_page(request, next, exc.message, 401)
    except OperatorLocked as exc:
        return _login_page(request, next, exc.message, 423)
    response = RedirectResponse(_back(next, BASE + "/"), status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=_secure(p), path=BASE)
    response.delete_cookie(LOGIN_COOKIE, path=BASE)
    return response


@router.post("/logout")
async def logout(request: Request):
    signed = await run_in_threadpool(signed_in, request)
    form = await request.form()
    if not operators.csrf_matches(signed.token, form.get("csrf_token")):
        raise NotPermitted("the form's CSRF token is missing or wrong")
    await run_in_threadpool(operators.sign_out, _p(request), signed.token)
    response = RedirectResponse(BASE + "/login", status_code=303)
    response.delete_cookie(COOKIE, path=BASE)
    return response


# --- pages ------------------------------------------------------------------------------------------
@router.get("/")
def home(request: Request, signed: Signed = Depends(signed_in)):
    p = _p(request)
    return _page(request, signed, "home.html", queue=queries.queue(p), charts=console_charts(p))


@router.get("/trades")
def trade_list(request: Request, q: str = "", merchant_id: str = "", status: str = "", limit: int | None = None,
               offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.trades_page(_p(request), q=q, merchant_id=merchant_id, status=status, limit=limit, offset=offset)
    return _page(request, signed, "trades.html", page=page)


@router.get("/trades/{trade_no}")
def trade_page(request: Request, trade_no: str, signed: Signed = Depends(signed_in)):
    detail = queries.trade_detail(_p(request), trade_no)
    if detail is None:
        return _page(request, signed, "error.html", 404, title="No such trade",
                     message=f"There is no trade {trade_no}.")
    return _page(request, signed, "trade.html", **detail)


@router.get("/refunds")
def refund_list(request: Request, q: str = "", merchant_id: str = "", status: str = "", parked: bool = False,
                limit: int | None = None, offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.refunds_page(_p(request), q=q, merchant_id=merchant_id, status=status, parked=parked,
                                limit=limit, offset=offset)
    return _page(request, signed, "refunds.html", page=page)


@router.get("/payouts")
def payout_list(request: Request, q: str = "", merchant_id: str = "", status: str = "", parked: bool = False,
                limit: int | None = None, offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.payouts_page(_p(request), q=q, merchant_id=merchant_id, status=status, parked=parked,
                                limit=limit, offset=offset)
    return _page(request, signed, "payouts.html", page=page)


@router.get("/members")
def member_list(request: Request, q: str = "", merchant_id: str = "", limit: int | None = None,
                offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.members_page(_p(request), q=q, merchant_id=merchant_id, limit=limit, offset=offset)
    return _page(request, signed, "members.html", page=page)


@router.get("/sub-merchants")
def sub_merchant_list(request: Request, q: str = "", merchant_id: str = "", status: str = "",
                      limit: int | None = None, offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.sub_merchants_page(_p(request), q=q, merchant_id=merchant_id, status=status, limit=limit,
                                      offset=offset)
    return _page(request, signed, "sub_merchants.html", page=page)


@router.get("/settlement")
def batch_list(request: Request, q: str = "", merchant_id: str = "", limit: int | None = None,
               offset: int | None = None, signed: Signed = Depends(signed_in)):
    page = queries.batches_page(_p(request), q=q, merchant_id=merchant_id, limit=limit, offset=offset)
    return _page(request, signed, "batches.html", page=page)


@router.get("/queue")
def queue_page(request: Request, signed: Signed = Depends(signed_in)):
    return _page(request, signed, "queue.html", queue=queries.queue(_p(request)))


@router.get("/ledger")
def ledger_page(request: Request, signed: Signed = Depends(signed_in)):
    return _page(request, signed, "ledger.html", result=None)


@router.get("/audit")
def audit_page(request: Request, object_id: str = "", limit: int | None = None, signed: Signed = Depends(signed_in)):
    limit, _ = queries.bounds(limit, 0)
    rows = operations.list_audit(_p(request), limit=limit, object_id=queries.clean(object_id) or None)
    return _page(request, signed, "audit.html", rows=rows, object_id=queries.clean(object_id))


@router.get("/operators")
def operator_list(request: Request, signed: Signed = Depends(signed_in)):
    if not signed.operator.is_admin:
        raise NotPermitted("only an admin sees the operators")
    return _page(request, signed, "operators.html", rows=operators.list_operators(_p(request)))


# --- actions (POST, CSRF, a role that may act; each audited by its use case) ------------------------
@router.post("/alerts/{alert_id}/resolve")
def resolve_alert(request: Request, alert_id: str, note: str = Form(""), back: str = Form(""),
                  signed: Signed = Depends(acting)):
    operations.resolve_alert(_p(request), alert_id, note=note, operator=signed.operator.name)
    return _done(_back(back, BASE + "/queue"), "alert.resolve")


@router.post("/findings/{finding_id}/resolve")
def resolve_finding(request: Request, finding_id: str, action: str = Form("accept"), note: str = Form(""),
                    back: str = Form(""), signed: Signed = Depends(acting)):
    findings.resolve(_p(request), finding_id, action=action, note=note, operator=signed.operator.name)
    return _done(_back(back, BASE + "/queue"), "finding.resolve")


@router.post("/notifications/{event_id}/resend")
def resend_notification(request: Request, event_id: str, back: str = Form(""), signed: Signed = Depends(acting)):
    operations.resend_notification(_p(request), event_id, operator=signed.operator.name)
    return _done(_back(back, BASE + "/queue"), "notification.resend")


@router.post("/refunds/{refund_no}/retry")
def retry_refund(request: Request, refund_no: str, note: str = Form(""), back: str = Form(""),
                 signed: Signed = Depends(acting)):
    operations.retry_refund(_p(request), refund_no, note=note.strip() or None, operator=signed.operator.name)
    return _done(_back(back, BASE + "/queue"), "refund.retry")


@router.post("/payouts/{payout_no}/retry")
def retry_payout(request: Request, payout_no: str, note: str = Form(""), back: str = Form(""),
                 signed: Signed = Depends(acting)):
    operations.retry_payout(_p(request), payout_no, note=note.strip() or None, operator=signed.operator.name)
    return _done(_back(back, BASE + "/queue"), "payout.retry")


@router.post("/ledger/check")
def check_ledger(request: Request, signed: Signed = Depends(acting)):
    result = operations.check_ledger(_p(request), operator=signed.operator.name)
    return _page(request, signed, "ledger.html", result=result)


# --- the app ----------------------------------------------------------------------------------------
class _SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error_page(status: int, title: str, message: str) -> HTMLResponse:
    return HTMLResponse(render("console/error.html", base=BASE, me=None, title=title, message=message),
                        status_code=status)


def create_console(p: Platform) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.platform = p
    app.include_router(router)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded):
        if request.method != "GET":
            return _error_page(403, "Signed out", "Your session has ended: sign in again.")
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{BASE}/login?{urlencode({'next': here})}", status_code=303)

    @app.exception_handler(PiaohaoError)
    async def _refused(request: Request, exc: PiaohaoError):
        return _error_page(status_of(exc), exc.code.replace("_", " ").capitalize(), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error_page(400, "Invalid request", "A field of this request is not valid.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error_page(exc.status_code, "Not here" if exc.status_code == 404 else "Refused", str(exc.detail))

    app.add_middleware(_SecurityHeaders)
    return app
