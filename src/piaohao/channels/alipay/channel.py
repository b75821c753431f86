"""`AlipayChannel`: the `Channel` protocol over Alipay's open gateway (`alipay.trade.*`, RSA2).

Never raises on network trouble: a timeout, a refused connection, a non-200, an answer that is
not signed by Alipay or cannot be read all become `Outcome.UNKNOWN` with `error`, to be settled
by a later query. A business refusal (`40004` + `ACQ.*`) is definite and maps per call below.
`download_bill` is the exception: it has no outcome to carry trouble, so it raises
`BillUnavailable`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, datetime
from urllib.parse import urlencode

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
    RefundRequest,
    RefundResult,
)
from piaohao.channels.spi import types as spi_types
from piaohao.channels.spi.crypto import load_private_key, load_public_key, rsa_sign, rsa_verify

from . import notifications
from .bill import BillUnreadable, parse_bill_zip
from .config import AlipayConfig
from .transformers import PRODUCTS, payment_biz, payment_result, product_for, refund_biz, refund_query_result
from .wire import CHARSET, find_member, from_wire_time, member_key, request_content, to_wire_time

__all__ = ["AlipayChannel", "BillUnavailable"]

SUCCESS = "10000"
BILL_BYTES_MAX = 1024 * 1024 * 1024  # refuse a "bill" larger than 1 GiB
BILL_SPOOL_BYTES = 8 * 1024 * 1024  # bills up to this stay in memory; larger ones go to a temp file
BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
# Refusals that say nothing about whether money moved: settle by querying.
UNCERTAIN_SUB_CODES = {"ACQ.SYSTEM_ERROR", "ACQ.DISCORDANT_REPEAT_REQUEST", "isp.unknow-error", "aop.unknow-error"}


class BillUnavailable(spi_types.BillUnavailable):
    """The day's bill could not be fetched or read."""


class _Trouble(Exception):
    """No trustworthy answer (transport, HTTP status, signature, format)."""


class AlipayChannel:
    """Thread-safe: holds immutable keys and config, and an `httpx.Client` (itself thread-safe)."""

    name = "alipay"
    products = tuple(p.product for p in PRODUCTS.values())

    def __init__(self, config: AlipayConfig, *, http: httpx.Client, now: Callable[[], datetime],
                 timeout_s: float = 5.0):
        self.config = config
        self.http = http
        self.now = now
        self.timeout_s = timeout_s
        self._private_key = load_private_key(config.private_key_pem)  # KeyFormatError early, not per call
        self._alipay_public_key = load_public_key(config.alipay_public_key_pem)

    # --- the wire ------------------------------------------------------------------------------

    def _signed_params(self, method: str, biz_content: str, **extra: str | None) -> dict[str, str]:
        params = {"app_id": self.config.app_id, "method": method, "format": "JSON", "charset": CHARSET,
                  "sign_type": "RSA2", "timestamp": to_wire_time(self.now()), "version": "1.0",
                  "biz_content": biz_content}
        params.update({k: v for k, v in extra.items() if v})
        params["sign"] = rsa_sign(self._private_key, request_content(params).encode(CHARSET))
        return params

    def _call(self, method: str, biz: dict) -> dict:
        """The verified response object of one gateway call; raises `_Trouble` when there is none."""
        params = self._signed_params(method, json.dumps(biz, ensure_ascii=False, separators=(",", ":")))
        try:
            resp = self.http.post(self.config.gateway_url, content=urlencode(params).encode("ascii"),
                                  headers={"content-type": f"application/x-www-form-urlencoded;charset={CHARSET}"},
                                  timeout=self.timeout_s)
        except httpx.HTTPError as e:
            raise _Trouble(f"{method}: {type(e).__name__}") from None
        if resp.status_code != 200:
            raise _Trouble(f"{method}: HTTP {resp.status_code}")
        answer = find_member(resp.content, member_key(method))
        if answer is None:
            raise _Trouble(f"{method}: answer without {member_key(method)} ({resp.content[:200]!r})")
        if not rsa_verify(self._alipay_public_key, answer.signed_bytes, answer.sign):
            raise _Trouble(f"{method}: answer signature does not verify (code {answer.member.get('code')})")
        return answer.member

    @staticmethod
    def _error(member: dict) -> str:
        return f"{member.get('code')} {member.get('sub_code', '')}: {member.get('sub_msg') or member.get('msg', '')}"

    # --- payments ------------------------------------------------------------------------------

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        """The signed GET URL of the cashier; no network call (the buyer's browser makes it)."""
        product = product_for(req.product)
        if product is None:
            return PaymentResult(Outcome.FAILED, error=f"alipay has no product {req.product!r}")
        if req.currency != "CNY":
            return PaymentResult(Outcome.FAILED, error=f"alipay takes CNY only, not {req.currency}")
        if not 1 <= req.amount <= (product.product.amount_max_minor or req.amount):
            return PaymentResult(Outcome.FAILED, error="amount outside alipay's per-payment bounds")
        params = self._signed_params(product.method, payment_biz(req, product), notify_url=req.notify_url,
                                     return_url=req.return_url)
        url = f"{self.config.gateway_url}?{urlencode(params)}"
        return PaymentResult(Outcome.PENDING, redirect_url=url, amount=req.amount, currency="CNY",
                             next_action=NextAction(NextActionType.REDIRECT, url=url))

    def query_payment(self, payment_no: str) -> PaymentResult:
        try:
            member = self._call("alipay.trade.query", {"out_trade_no": payment_no})
        except _Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if member.get("code") == SUCCESS:
            return payment_result(member)
        if member.get("sub_code") == "ACQ.TRADE_NOT_EXIST":  # the buyer has not opened the cashier (yet)
            return PaymentResult(Outcome.NOT_FOUND, error=self._error(member))
        return PaymentResult(Outcome.UNKNOWN, error=self._error(member))

    def close_payment(self, payment_no: str) -> PaymentResult:
        """CLOSED; NOT_FOUND if Alipay never saw the trade (its URL stays payable until time_expire);
        SUCCEEDED if the buyer paid first."""
        try:
            member = self._call("alipay.trade.close", {"out_trade_no": payment_no})
        except _Trouble as e:
            return PaymentResult(Outcome.UNKNOWN, error=str(e))
        if member.get("code") == SUCCESS:
            return PaymentResult(Outcome.CLOSED, channel_txn_no=member.get("trade_no"))
        if member.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return PaymentResult(Outcome.NOT_FOUND, error=self._error(member))
        if member.get("code") == "40004":  # e.g. ACQ.TRADE_STATUS_ERROR: paid or closed already; ask which
            current = self.query_payment(payment_no)
            if current.outcome in (Outcome.SUCCEEDED, Outcome.CLOSED):
                return current
            return PaymentResult(Outcome.UNKNOWN, error=f"{self._error(member)}; then {current.error}")
        return PaymentResult(Outcome.UNKNOWN, error=self._error(member))

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> RefundResult:
        """SUCCEEDED only when Alipay says money moved (`fund_change=Y`) or the refund query says so."""
        if req.currency != "CNY" or req.amount < 1:
            return RefundResult(Outcome.FAILED, error="alipay refunds CNY amounts of at least 0.01")
        try:
            member = self._call("alipay.trade.refund", refund_biz(req))
        except _Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if member.get("code") == SUCCESS:
            if member.get("fund_change") == "Y":
                return RefundResult(Outcome.SUCCEEDED, amount=req.amount,
                                    finished_at=from_wire_time(member.get("gmt_refund_pay")))
            confirmed = self.query_refund(req.refund_no, req.payment_no)  # a replay, or not settled yet
            if confirmed.outcome is Outcome.NOT_FOUND:
                return RefundResult(Outcome.PENDING, error="accepted; not yet visible in the refund query")
            return confirmed
        if member.get("code") == "40004" and member.get("sub_code") not in UNCERTAIN_SUB_CODES:
            return RefundResult(Outcome.FAILED, error=self._error(member))
        return RefundResult(Outcome.UNKNOWN, error=self._error(member))

    def query_refund(self, refund_no: str, payment_no: str) -> RefundResult:
        biz = {"out_trade_no": payment_no, "out_request_no": refund_no, "query_options": ["gmt_refund_pay"]}
        try:
            member = self._call("alipay.trade.fastpay.refund.query", biz)
        except _Trouble as e:
            return RefundResult(Outcome.UNKNOWN, error=str(e))
        if member.get("code") == SUCCESS:
            return refund_query_result(member)
        if member.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return RefundResult(Outcome.NOT_FOUND, error=self._error(member))
        return RefundResult(Outcome.UNKNOWN, error=self._error(member))

    # --- bills ---------------------------------------------------------------------------------

    def download_bill(self, bill_date: date) -> Iterator[BillRow]:
        """Rows of the day's trade bill, streamed; raises `BillUnavailable` (also mid-way)."""
        try:
            member = self._call(BILL_METHOD, {"bill_type": "trade", "bill_date": bill_date.isoformat()})
        except _Trouble as e:
            raise BillUnavailable(str(e)) from None
        url = member.get("bill_download_url")
        if member.get("code") != SUCCESS or not isinstance(url, str):
            raise BillUnavailable(self._error(member))
        with tempfile.SpooledTemporaryFile(max_size=BILL_SPOOL_BYTES) as spool:
            self._fetch(url, spool)
            try:
                yield from parse_bill_zip(spool)
            except BillUnreadable as e:
                raise BillUnavailable(str(e)) from e

    def _fetch(self, url: str, sink) -> None:
        size = 0
        try:
            with self.http.stream("GET", url, timeout=self.timeout_s) as resp:
                if resp.status_code != 200:
                    raise BillUnavailable(f"bill download: HTTP {resp.status_code}")
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > BILL_BYTES_MAX:
                        raise BillUnavailable("bill larger than BILL_BYTES_MAX")
                    sink.write(chunk)
        except httpx.HTTPError as e:
            raise BillUnavailable(f"bill download: {type(e).__name__}") from None
        sink.seek(0)

    # --- notifications -------------------------------------------------------------------------

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        return notifications.verify_notification(body, alipay_public_key=self._alipay_public_key,
                                                 app_id=self.config.app_id, now=self.now())

    def ack(self, accepted: bool) -> NotificationAck:
        """Alipay stops resending only on a body of exactly `success`."""
        return NotificationAck(200, b"success" if accepted else b"fail", media_type="text/plain")
