"""The open gateway `/gateway.do` of the fake Alipay, as an ASGI app.

Requests are read as Alipay reads them: query string and form body merged, percent-decoding in
the request's `charset`, common parameters checked, the RSA2 signature verified over the received
text with the app's registered public key, then `biz_content` parsed. Server calls are answered
`{"<method>_response":{...},"sign":"..."}`: compact JSON, the response object first, the signature
over its exact text last. Page/WAP pay answer a tiny cashier page instead (the buyer's browser).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from . import signing
from .faults import GATEWAY_KINDS, Fault
from .model import App, fen_text, parse_beijing
from .service import PAGE_PRODUCTS, AlipayError, AlipayFake

__all__ = ["Gateway"]

REQUIRED = ("app_id", "method", "charset", "sign_type", "sign", "timestamp", "version")
CHARSETS = {"utf-8": "utf-8", "gbk": "gbk", "gb2312": "gbk"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
HANG_MAX_S = 30.0  # a hung answer is released after this at the latest, so servers can stop
BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"


def _member_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def _charset_of(raw: bytes) -> str | None:
    m = re.search(rb"(?:^|&)charset=([A-Za-z0-9_-]+)", raw)
    return m.group(1).decode().lower() if m else None


class Gateway:
    """Reads, verifies and dispatches gateway calls for one `AlipayFake`."""

    def __init__(self, fake: AlipayFake):
        self.fake = fake
        self._wrong_key = signing.generate_private_key()  # for `bad_response_signature`

    # --- reading -------------------------------------------------------------------------------

    async def read(self, request: Request) -> tuple[dict[str, str], str]:
        raw_query = request.scope.get("query_string", b"")
        body = await request.body() if request.method == "POST" else b""
        charset = CHARSETS.get(_charset_of(raw_query) or _charset_of(body) or "utf-8", "")
        if not charset:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-charset", "字符集错误")
        params: dict[str, str] = {}
        for raw in (raw_query, body):
            params.update(parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding=charset,
                                    errors="strict"))
        return params, charset

    def check(self, params: dict[str, str], charset: str) -> tuple[App, dict]:
        """Common parameters, app, signature, then biz_content: Alipay's order of refusals."""
        for name in REQUIRED:
            if not params.get(name):
                raise AlipayError("40001", "Missing Required Arguments", f"isv.missing-{name.replace('_', '-')}",
                                  f"缺少{name}参数")
        app = self.fake.apps.get(params["app_id"])
        if app is None:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != "RSA2":
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型")
        if not TIMESTAMP.fullmatch(params["timestamp"]) or parse_beijing(params["timestamp"]) is None:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数")
        if params["version"] != "1.0":
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-version", "无效的版本号")
        if params.get("format", "JSON").upper() != "JSON":
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-format", "无效的数据格式")
        content = signing.request_content(params).encode(charset)
        if not signing.verify(app.public_key, content, params["sign"]):
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错")
        try:
            biz = json.loads(params.get("biz_content") or "")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-biz-content", "biz_content不是JSON对象")
        return app, biz

    # --- answering -----------------------------------------------------------------------------

    def envelope(self, key: str, member: dict, charset: str, wrong_key: bool = False) -> Response:
        text = json.dumps(member, ensure_ascii=False, separators=(",", ":"))
        sign = signing.sign(self._wrong_key if wrong_key else self.fake.key, text.encode(charset))
        body = f'{{"{key}":{text},"sign":"{sign}"}}'
        return Response(body.encode(charset), media_type=f"text/html;charset={charset}")

    async def handle(self, request: Request) -> Response:
        charset = "utf-8"
        try:
            params, charset = await self.read(request)
        except (AlipayError, UnicodeDecodeError) as e:
            err = e if isinstance(e, AlipayError) else AlipayError("40002", "Invalid Arguments",
                                                                    "isv.invalid-encoding", "编码错误")
            return self.envelope("error_response", err.as_member(), "utf-8")
        method = params.get("method", "")
        if method in PAGE_PRODUCTS:
            return self.page(params, charset, method)
        key = _member_key(method) if method in HANDLERS else "error_response"
        try:
            app, biz = self.check(params, charset)
            if method not in HANDLERS:
                raise AlipayError("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
            fault = self.fake.faults.take(GATEWAY_KINDS, biz.get("out_trade_no"), method)
            if fault is not None:
                early = await self._fault(fault, key, charset)
                if early is not None:
                    return early
            member = HANDLERS[method](self, app, biz, request)
            if fault is not None and fault.kind == "system_error":  # applied, but the caller never learns
                raise AlipayError("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙")
            return self.envelope(key, member, charset, wrong_key=fault is not None
                                 and fault.kind == "bad_response_signature")
        except AlipayError as e:
            return self.envelope(key, e.as_member(), charset)

    async def _fault(self, fault: Fault, key: str, charset: str) -> Response | None:
        if fault.kind == "hang":
            deadline = time.monotonic() + HANG_MAX_S
            while not self.fake.faults.released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        elif fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        elif fault.kind == "http_502":
            return HTMLResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)
        elif fault.kind == "unsigned_error":
            member = {"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error",
                      "sub_msg": "系统繁忙"}
            return Response(json.dumps({"error_response": member}, ensure_ascii=False, separators=(",", ":")),
                            media_type=f"text/html;charset={charset}")
        elif fault.kind == "system_error" and not fault.apply:
            err = AlipayError("20000", "Service Currently Unavailable", "isp.unknow-error", "系统繁忙")
            return self.envelope(key, err.as_member(), charset)
        return None

    def page(self, params: dict[str, str], charset: str, method: str) -> Response:
        """The cashier page the buyer's browser lands on. Opening it creates the trade."""
        try:
            app, biz = self.check(params, charset)
            trade = self.fake.open_page(app, method, biz, params.get("notify_url", ""))
        except AlipayError as e:
            return HTMLResponse(f'<html><body><h1>支付宝 - 错误</h1><p id="error" data-code="{e.code}" '
                                f'data-sub-code="{html.escape(e.sub_code or "")}">{html.escape(e.sub_msg or e.msg)}'
                                "</p></body></html>", status_code=400)
        return HTMLResponse(
            f'<html><head><meta charset="utf-8"><title>支付宝收银台</title></head><body>'
            f'<h1 id="subject">{html.escape(trade.subject)}</h1><p id="amount">{fen_text(trade.total_fen)}</p>'
            f'<p id="trade-no">{trade.trade_no}</p>'
            f'<form method="post" action="/fake/trades/{trade.out_trade_no}/pay?app_id={app.app_id}">'
            '<button type="submit">确认付款</button></form></body></html>')


def _query(gw: Gateway, app: App, biz: dict, request: Request) -> dict:
    return gw.fake.query(app, biz)


def _close(gw: Gateway, app: App, biz: dict, request: Request) -> dict:
    return gw.fake.close(app, biz)


def _refund(gw: Gateway, app: App, biz: dict, request: Request) -> dict:
    return gw.fake.refund(app, biz)


def _refund_query(gw: Gateway, app: App, biz: dict, request: Request) -> dict:
    return gw.fake.refund_query(app, biz)


def _bill_url(gw: Gateway, app: App, biz: dict, request: Request) -> dict:
    token = gw.fake.bill_link(app, biz)
    base = str(request.base_url).rstrip("/")
    return {"code": "10000", "msg": "Success",
            "bill_download_url": f"{base}/downloadBillFile.resource?bizType=trade&fileType=csv.zip&token={token}"}


HANDLERS = {
    "alipay.trade.query": _query,
    "alipay.trade.close": _close,
    "alipay.trade.refund": _refund,
    "alipay.trade.fastpay.refund.query": _refund_query,
    BILL_METHOD: _bill_url,
}
