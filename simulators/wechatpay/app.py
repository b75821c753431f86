"""The fake's HTTP face: the API v3 endpoints a merchant calls, plus `/fake/...` control
endpoints for tests (the buyer pays, a refund settles, faults on and off, onboarding).

Every `/v3/` call must be signed (`Authorization: WECHATPAY2-SHA256-RSA2048 …`), send
`Accept: application/json` and a `User-Agent`, and (with a body) `Content-Type: application/json`.
Every answer except the bill file is signed with the platform key under the serial the merchant
knows it by (a `PUB_KEY_ID_…` or the platform certificate's serial).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import crypto
from .bill import render_tradebill
from .errors import ApiError, param_error
from .models import Merchant
from .state import BEIJING, wechat_time
from .validation import no_nulls
from .wire import authenticate, signed_headers

if TYPE_CHECKING:
    from .fake import WechatPayFake

__all__ = ["create_app"]

JSON = "application/json; charset=utf-8"
BILL_URL_TTL_S = 30
BODY_BYTES_MAX = 1 << 20


class _Answer:
    def __init__(self, status: int, data: dict | None = None, out_trade_no: str | None = None):
        self.status, self.data, self.out_trade_no = status, data, out_trade_no


def _dumps(data: dict) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def create_app(fake: WechatPayFake) -> Starlette:
    state, platform = fake.state, fake.platform
    bill_files: dict[str, tuple[bytes, object, bool]] = {}  # token -> (content, expires_at, gzip)

    def serial_for(merchant: Merchant | None) -> str:
        if merchant is not None and merchant.key_mode == "certificate":
            return platform.cert_serial
        return platform.public_key_id

    def respond(status: int, data: dict | None, merchant: Merchant | None) -> Response:
        body = _dumps(data) if data is not None else b""
        headers = signed_headers(platform.key, serial_for(merchant), body, state.now(),
                                 f"{secrets.token_hex(16)}-{status}")
        return Response(body, status_code=status, headers=headers, media_type=JSON if data is not None else None)

    def api(handler: Callable[[Request, Merchant, dict], _Answer]) -> Callable:
        async def endpoint(request: Request) -> Response:
            merchant = None
            try:
                body = await request.body()
                if len(body) > BODY_BYTES_MAX:
                    raise param_error("请求体过大")
                if not request.headers.get("user-agent"):
                    raise ApiError(400, "PARAM_ERROR", "缺少 User-Agent 请求头")
                if "application/json" not in request.headers.get("accept", ""):
                    raise ApiError(400, "PARAM_ERROR", "Accept 须为 application/json")
                raw_path = request.scope.get("raw_path") or request.url.path.encode()
                query = request.scope.get("query_string", b"")
                url = raw_path.decode() + ("?" + query.decode() if query else "")
                merchant = authenticate(state.merchants, request.method, url, body,
                                        request.headers.get("authorization"), state.now())
                payload: dict = {}
                if request.method == "POST":
                    if not request.headers.get("content-type", "").startswith("application/json"):
                        raise ApiError(400, "PARAM_ERROR", "Content-Type 须为 application/json")
                    try:
                        payload = json.loads(body)
                    except (ValueError, UnicodeDecodeError) as e:
                        raise param_error("请求体不是合法的JSON") from e
                    if not isinstance(payload, dict):
                        raise param_error("请求体须为JSON对象")
                    no_nulls(payload)
                answer = handler(request, merchant, payload)
            except ApiError as e:
                return respond(e.status, e.body(), merchant)
            slow = state.faults.find("slow", answer.out_trade_no)
            if slow is not None:
                await asyncio.sleep(slow.delay_s)
            if state.faults.has("system_error", answer.out_trade_no):
                return respond(500, {"code": "SYSTEM_ERROR", "message": "系统错误"}, merchant)
            return respond(answer.status, answer.data, merchant)

        return endpoint

    def mchid_query(request: Request, merchant: Merchant) -> None:
        if request.query_params.get("mchid") != merchant.mchid:
            raise param_error("mchid为必填项，且须与请求签名中的商户号一致", "mchid", request.query_params.get("mchid"))

    def prepay(product: str) -> Callable:
        def handler(request: Request, merchant: Merchant, payload: dict) -> _Answer:
            return _Answer(200, state.create_order(merchant.mchid, product, payload), payload.get("out_trade_no"))
        return handler

    def query(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        mchid_query(request, merchant)
        no = request.path_params["out_trade_no"]
        return _Answer(200, state.query_order(merchant.mchid, no), no)

    def close(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        no = request.path_params["out_trade_no"]
        state.close_order(merchant.mchid, no, payload)
        return _Answer(204, None, no)

    def refund(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        return _Answer(200, state.create_refund(merchant.mchid, payload), payload.get("out_trade_no"))

    def refund_query(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        data = state.query_refund(merchant.mchid, request.path_params["out_refund_no"])
        return _Answer(200, data, data["out_trade_no"])

    def certificates(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        nonce = crypto.nonce(12)
        ciphertext = crypto.aes_gcm_seal(merchant.apiv3_key.encode(), nonce, "certificate",
                                         platform.certificate_pem.encode())
        item = {"serial_no": platform.cert_serial, "effective_time": wechat_time(platform.not_before),
                "expire_time": wechat_time(platform.not_after),
                "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce,
                                        "associated_data": "certificate", "ciphertext": ciphertext}}
        return _Answer(200, {"data": [item]})

    def tradebill(request: Request, merchant: Merchant, payload: dict) -> _Answer:
        params = request.query_params
        try:
            bill_date = date.fromisoformat(params.get("bill_date", ""))
        except ValueError as e:
            raise param_error("bill_date格式不正确，应为YYYY-MM-DD", "bill_date", params.get("bill_date")) from e
        bill_type = params.get("bill_type", "ALL")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise param_error("bill_type取值不正确", "bill_type", bill_type)
        tar_type = params.get("tar_type")
        if tar_type not in (None, "GZIP"):
            raise param_error("tar_type取值不正确", "tar_type", tar_type)
        if bill_date >= state.now().astimezone(BEIJING).date():
            raise ApiError(400, "NO_STATEMENT_EXIST", "账单尚未生成")
        with state.lock:
            trades = [t for (m, _), t in state.trades.items() if m == merchant.mchid]
            refunds = [r for (m, _), r in state.refunds.items() if m == merchant.mchid]
            bill = render_tradebill(merchant, trades, refunds, bill_date, bill_type, state.faults)
        if bill is None:
            raise ApiError(400, "NO_STATEMENT_EXIST", "当日无交易，账单不存在")
        token = secrets.token_urlsafe(24)
        bill_files[token] = (bill.content, state.now() + timedelta(seconds=BILL_URL_TTL_S), tar_type == "GZIP")
        url = f"{str(request.base_url).rstrip('/')}/v3/billdownload/file?token={token}"
        return _Answer(200, {"hash_type": "SHA1", "hash_value": bill.hash_value, "download_url": url})

    async def bill_file(request: Request) -> Response:
        """Signed request, unsigned answer: the bill's integrity comes from tradebill's SHA1 [W7]."""
        try:
            body = await request.body()
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            url = raw_path.decode() + "?" + request.scope.get("query_string", b"").decode()
            authenticate(state.merchants, "GET", url, body, request.headers.get("authorization"), state.now())
            entry = bill_files.get(request.query_params.get("token", ""))
            if entry is None or state.now() > entry[1]:
                raise ApiError(400, "INVALID_REQUEST", "下载链接无效或已过期")
        except ApiError as e:
            return Response(_dumps(e.body()), status_code=e.status, media_type=JSON)
        content, _, gz = entry
        if gz:
            return Response(gzip.compress(content), media_type="application/octet-stream")
        return Response(content, media_type="text/plain; charset=utf-8")

    # --- test-only control ------------------------------------------------------------------

    async def control_json(request: Request) -> dict:
        body = await request.body()
        return json.loads(body) if body else {}

    async def fake_pay(request: Request) -> Response:
        data = await control_json(request)
        try:
            trade = state.pay(request.path_params["out_trade_no"], data.get("mchid"), data.get("openid"))
        except ApiError as e:
            return Response(_dumps(e.body()), status_code=e.status, media_type=JSON)
        return Response(_dumps(trade), media_type=JSON)

    async def fake_refund_finish(request: Request) -> Response:
        data = await control_json(request)
        try:
            record = state.finish_refund(request.path_params["out_refund_no"], data.get("status", "SUCCESS"),
                                         data.get("mchid"))
        except ApiError as e:
            return Response(_dumps(e.body()), status_code=e.status, media_type=JSON)
        return Response(_dumps(record), media_type=JSON)

    async def fake_faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            return Response(status_code=204)
        data = await control_json(request)
        try:
            fault = state.faults.set(data["kind"], out_trade_no=data.get("out_trade_no"),
                                     delay_s=data.get("delay_s", 10.0))
        except (KeyError, ValueError) as e:
            return Response(_dumps({"code": "PARAM_ERROR", "message": str(e)}), status_code=400, media_type=JSON)
        return Response(_dumps({"kind": fault.kind, "out_trade_no": fault.out_trade_no}), media_type=JSON)

    async def fake_merchants(request: Request) -> Response:
        data = await control_json(request)
        try:
            merchant = fake.register_merchant(**data)
        except (TypeError, ValueError) as e:
            return Response(_dumps({"code": "PARAM_ERROR", "message": str(e)}), status_code=400, media_type=JSON)
        return Response(_dumps(fake.platform_info(merchant)), media_type=JSON)

    async def fake_notify(request: Request) -> Response:
        return Response(_dumps({"handled": fake.notifier.run_once()}), media_type=JSON)

    routes = [
        Route("/v3/pay/transactions/native", api(prepay("native")), methods=["POST"]),
        Route("/v3/pay/transactions/h5", api(prepay("h5")), methods=["POST"]),
        Route("/v3/pay/transactions/jsapi", api(prepay("jsapi")), methods=["POST"]),
        Route("/v3/pay/transactions/out-trade-no/{out_trade_no}", api(query), methods=["GET"]),
        Route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", api(close), methods=["POST"]),
        Route("/v3/refund/domestic/refunds", api(refund), methods=["POST"]),
        Route("/v3/refund/domestic/refunds/{out_refund_no}", api(refund_query), methods=["GET"]),
        Route("/v3/certificates", api(certificates), methods=["GET"]),
        Route("/v3/bill/tradebill", api(tradebill), methods=["GET"]),
        Route("/v3/billdownload/file", bill_file, methods=["GET"]),
        Route("/fake/transactions/{out_trade_no}/pay", fake_pay, methods=["POST"]),
        Route("/fake/refunds/{out_refund_no}/finish", fake_refund_finish, methods=["POST"]),
        Route("/fake/faults", fake_faults, methods=["POST", "DELETE"]),
        Route("/fake/merchants", fake_merchants, methods=["POST"]),
        Route("/fake/notifications/run", fake_notify, methods=["POST"]),
    ]
    return Starlette(routes=routes)
