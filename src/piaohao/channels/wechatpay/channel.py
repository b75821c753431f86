"""`WechatPayChannel`: the `Channel` protocol over WeChat Pay API v3 (Native, H5 and JSAPI).

Every request is signed, every answer's signature is verified. It never raises for network
trouble: a timeout, a transport error, a 5xx or an answer we cannot verify is
`Outcome.UNKNOWN` with `error`, to be settled by a query. A verified 4xx is a refusal (FAILED)
only where it certainly means "nothing happened"; otherwise we look (query) or say UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from urllib.parse import quote

import httpx

from piaohao.channels.spi import (
    BillRow,
    ChannelNotification,
    CreatePayment,
    NextAction,
    NextActionType,
    NotificationAck,
    Outcome,
    PaymentResult,
    Product,
    RefundRequest,
    RefundResult,
)
from piaohao.channels.spi.crypto import rsa_sign

from .bill import BillUnavailable, parse_bill, spool_verified
from .config import WechatPayConfig
from .notifications import parse_notification
from .transformers import PRODUCT_PATHS, payment_from_transaction, prepay_body, refund_body, refund_from_record
from .wire import Answer, Trouble, WireClient, dumps, nonce

__all__ = ["AMOUNT_MAX_FEN", "WechatPayChannel"]

# WeChat Pay documents no per-order cap in the API (`amount.total` is an int64 of fen); what
# limits a payment in practice is the payer's balance and bank-card limits. We list a cap high
# enough never to refuse a real order and low enough to stop an absurd one.
AMOUNT_MAX_FEN = 100_000_000_00  # 100 million yuan
# Verified 4xx codes after which an order may exist all the same: look before saying FAILED.
UNCERTAIN_CODES = {"SIGN_ERROR", "FREQUENCY_LIMITED", "INVALID_REQUEST", "SYSTEM_ERROR", "ORDER_PAID"}


def _q(segment: str) -> str:
    return quote(segment, safe="*")


class WechatPayChannel:
    """One merchant's WeChat Pay account. Thread-safe (an `httpx.Client` is; nothing else is shared)."""

    name = "wechatpay"
    products = (Product("wechatpay.native", amount_max_minor=AMOUNT_MAX_FEN),
                Product("wechatpay.h5", amount_max_minor=AMOUNT_MAX_FEN),
                Product("wechatpay.jsapi", amount_max_minor=AMOUNT_MAX_FEN, needs_openid=True))

    def __init__(self, config: WechatPayConfig, *, http: httpx.Client, now: Callable[[], datetime],
                 timeout_s: float = 5.0):
        self.config = config
        self.now = now
        self.wire = WireClient(config, http, now, timeout_s)

    # --- payments ---------------------------------------------------------------------------

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        product = req.product or "wechatpay.native"
        if product not in PRODUCT_PATHS:
            return PaymentResult(Outcome.FAILED, error=f"unknown product {product!r}")
        if product == "wechatpay.h5" and not req.client_ip:
            return PaymentResult(Outcome.FAILED, error="wechatpay.h5 needs the buyer's client_ip")
        if product == "wechatpay.jsapi" and not req.openid:
            return PaymentResult(Outcome.FAILED, error="wechatpay.jsapi needs the payer's openid")
        try:
            answer = self.wire.call("POST", PRODUCT_PATHS[product], prepay_body(self.config, req, product))
        except Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return self._next_action(answer.data, product)
        if answer.code == "ORDER_PAID":
            return self.query_payment(req.payment_no)
        if answer.code == "ORDER_CLOSED":
            return PaymentResult(Outcome.CLOSED, error=answer.error)
        if answer.code in UNCERTAIN_CODES or answer.status in (401, 403, 429):
            return PaymentResult(Outcome.UNKNOWN, error=answer.error)
        return PaymentResult(Outcome.FAILED, error=answer.error)  # PARAM_ERROR and such: nothing was created

    def _next_action(self, data: dict, product: str) -> PaymentResult:
        if product == "wechatpay.native" and isinstance(data.get("code_url"), str):
            return PaymentResult(Outcome.PENDING,
                                 next_action=NextAction(NextActionType.QR_CODE, code_url=data["code_url"]))
        if product == "wechatpay.h5" and isinstance(data.get("h5_url"), str):
            return PaymentResult(Outcome.PENDING, redirect_url=data["h5_url"],
                                 next_action=NextAction(NextActionType.REDIRECT, url=data["h5_url"]))
        if product == "wechatpay.jsapi" and isinstance(data.get("prepay_id"), str):
            return PaymentResult(Outcome.PENDING, next_action=NextAction(
                NextActionType.JSAPI, params=self.jsapi_params(data["prepay_id"])))
        return PaymentResult(Outcome.UNKNOWN, error="prepay answer lacks its code_url / h5_url / prepay_id")

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """What `WeixinJSBridge.invoke('getBrandWCPayRequest', …)` takes: paySign is SHA256withRSA with
        the merchant key over `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
        params = {"appId": self.config.appid, "timeStamp": str(int(self.now().timestamp())), "nonceStr": nonce(),
                  "package": f"prepay_id={prepay_id}", "signType": "RSA"}
        message = "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
        params["paySign"] = rsa_sign(self.config.private_key, message.encode())
        return params

    def query_payment(self, payment_no: str) -> PaymentResult:
        try:
            answer = self.wire.call("GET", f"/v3/pay/transactions/out-trade-no/{_q(payment_no)}"
                                           f"?mchid={_q(self.config.mchid)}")
        except Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return payment_from_transaction(self.config, answer.data, payment_no)
        if answer.status == 404 and answer.code == "ORDER_NOT_EXIST":
            return PaymentResult(Outcome.NOT_FOUND, error=answer.error)
        return PaymentResult(Outcome.UNKNOWN, error=answer.error)

    def close_payment(self, payment_no: str) -> PaymentResult:
        """Close, then query: a 204 says the close was taken, not what the trade now is (it may have
        been paid a moment before). "No such order" is NOT_FOUND, never CLOSED."""
        try:
            answer = self.wire.call("POST", f"/v3/pay/transactions/out-trade-no/{_q(payment_no)}/close",
                                    {"mchid": self.config.mchid})
        except Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 404 and answer.code == "ORDER_NOT_EXIST":
            return PaymentResult(Outcome.NOT_FOUND, error=answer.error)
        if answer.status != 204 and answer.code != "ORDER_PAID":
            return PaymentResult(Outcome.UNKNOWN, error=answer.error)
        after = self.query_payment(payment_no)
        if after.outcome is Outcome.PENDING:
            return PaymentResult(Outcome.UNKNOWN, error="close accepted but the trade is still open")
        return after

    # --- refunds ----------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> RefundResult:
        if req.payment_amount is None:
            return RefundResult(Outcome.FAILED, error="WeChat Pay needs the payment's amount (payment_amount)")
        try:
            answer = self.wire.call("POST", "/v3/refund/domestic/refunds", refund_body(req))
        except Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 200:
            return refund_from_record(answer.data, req.refund_no)
        return self._refund_refused(answer, req)

    def _refund_refused(self, answer: Answer, req: RefundRequest) -> RefundResult:
        """A verified refusal. One code (INVALID_REQUEST) covers both "cannot refund" and "this refund
        number was used with other amounts", so look the number up before calling it FAILED."""
        if answer.status in (401, 429) or answer.code in ("SIGN_ERROR", "FREQUENCY_LIMITED", "SYSTEM_ERROR"):
            return RefundResult(Outcome.UNKNOWN, error=answer.error)
        existing = self.query_refund(req.refund_no, req.payment_no)
        if existing.outcome is Outcome.NOT_FOUND:
            return RefundResult(Outcome.FAILED, error=answer.error)
        if existing.outcome is Outcome.UNKNOWN:
            return RefundResult(Outcome.UNKNOWN, error=f"{answer.error}; then {existing.error}")
        if existing.amount != req.amount:
            return RefundResult(Outcome.UNKNOWN, error=f"refund number already used for {existing.amount} fen")
        return existing

    def query_refund(self, refund_no: str, payment_no: str) -> RefundResult:
        try:
            answer = self.wire.call("GET", f"/v3/refund/domestic/refunds/{_q(refund_no)}")
        except Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if answer.status == 404 and answer.code in ("RESOURCE_NOT_EXISTS", "ORDER_NOT_EXIST"):
            return RefundResult(Outcome.NOT_FOUND, error=answer.error)
        if answer.status != 200:
            return RefundResult(Outcome.UNKNOWN, error=answer.error)
        if payment_no and answer.data.get("out_trade_no") != payment_no:
            return RefundResult(Outcome.UNKNOWN, error="refund belongs to another payment")
        return refund_from_record(answer.data, refund_no)

    # --- bill -------------------------------------------------------------------------------

    def download_bill(self, bill_date: date) -> Iterator[BillRow]:
        """The day's bill rows (Beijing day). Fetches and checks the SHA1 before returning; rows are
        parsed as they are read. Raises `BillUnavailable` when the bill cannot be had or trusted;
        a day without trades (NO_STATEMENT_EXIST) is an empty bill."""
        try:
            answer = self.wire.call("GET", f"/v3/bill/tradebill?bill_date={bill_date.isoformat()}"
                                           "&bill_type=ALL&tar_type=GZIP")
        except Trouble as e:
            raise BillUnavailable(str(e)) from e
        if answer.status == 400 and answer.code == "NO_STATEMENT_EXIST":
            return iter(())
        url, hash_value = answer.data.get("download_url"), answer.data.get("hash_value")
        if answer.status != 200 or answer.data.get("hash_type") != "SHA1" or not (
                isinstance(url, str) and isinstance(hash_value, str)):
            raise BillUnavailable(f"tradebill refused or unreadable: {answer.error}")
        try:
            response = self.wire.open_download(url)
        except httpx.HTTPError as e:
            raise BillUnavailable(f"bill download failed: {type(e).__name__}") from e
        try:
            if response.status_code != 200:
                raise BillUnavailable(f"bill download refused: HTTP {response.status_code}")
            spool = spool_verified(response, hash_value)
        finally:
            response.close()
        return parse_bill(spool, self.config.mchid)

    # --- notifications ----------------------------------------------------------------------

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        return parse_notification(self.config, headers, body, self.now())

    def ack(self, accepted: bool) -> NotificationAck:
        """204 stops WeChat Pay's retries; a 4xx with `{"code":"FAIL"}` asks for a resend later."""
        if accepted:
            return NotificationAck(204, b"")
        return NotificationAck(400, dumps({"code": "FAIL", "message": "失败"}))
