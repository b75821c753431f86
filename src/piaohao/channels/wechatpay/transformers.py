"""Translation between the core's types and WeChat Pay's JSON: request bodies out, payments and
refunds back. Pure functions: no I/O, no clock of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from piaohao.channels.spi import CreatePayment, Outcome, PaymentResult, RefundRequest, RefundResult

from .config import WechatPayConfig

__all__ = [
    "PRODUCT_PATHS", "REFUND_OUTCOMES", "TRADE_OUTCOMES", "parse_time", "payment_from_transaction", "prepay_body",
    "refund_body", "refund_from_record", "wechat_time",
]

BEIJING = timezone(timedelta(hours=8))
DESCRIPTION_CHARS_MAX = 127
REASON_CHARS_MAX = 80
PRODUCT_PATHS = {"wechatpay.native": "/v3/pay/transactions/native", "wechatpay.h5": "/v3/pay/transactions/h5",
                 "wechatpay.jsapi": "/v3/pay/transactions/jsapi"}
# REFUND: the trade was paid and a refund started; the payment itself succeeded.
TRADE_OUTCOMES = {"SUCCESS": Outcome.SUCCEEDED, "REFUND": Outcome.SUCCEEDED, "NOTPAY": Outcome.PENDING,
                  "USERPAYING": Outcome.PENDING, "CLOSED": Outcome.CLOSED, "REVOKED": Outcome.CLOSED,
                  "PAYERROR": Outcome.FAILED}
# ABNORMAL: the money left the merchant but could not reach the buyer (closed card...): not final,
# it needs an abnormal-refund request from an operator. CLOSED: the refund will not happen.
REFUND_OUTCOMES = {"SUCCESS": Outcome.SUCCEEDED, "PROCESSING": Outcome.PENDING, "ABNORMAL": Outcome.PENDING,
                   "CLOSED": Outcome.FAILED}


def wechat_time(moment: datetime) -> str:
    """RFC 3339 in Beijing time, whole seconds: 2018-06-08T10:34:56+08:00 (a naive time is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _fen(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _three_byte_utf8(text: str) -> str:
    """WeChat Pay accepts only characters of 1-3 UTF-8 bytes [W18]: drop emoji and the like."""
    return "".join(ch for ch in text if ord(ch) <= 0xFFFF)


def prepay_body(config: WechatPayConfig, req: CreatePayment, product: str) -> dict:
    description = _three_byte_utf8(req.subject)[:DESCRIPTION_CHARS_MAX]
    body: dict = {"appid": config.appid, "mchid": config.mchid, "description": description,
                  "out_trade_no": req.payment_no, "time_expire": wechat_time(req.expires_at),
                  "notify_url": req.notify_url, "amount": {"total": req.amount, "currency": req.currency}}
    if product == "wechatpay.h5":
        body["scene_info"] = {"payer_client_ip": req.client_ip, "h5_info": {"type": "Wap"}}
    if product == "wechatpay.jsapi":
        body["payer"] = {"openid": req.openid}
    return body


def refund_body(req: RefundRequest) -> dict:
    body: dict = {"out_trade_no": req.payment_no, "out_refund_no": req.refund_no,
                  "amount": {"refund": req.amount, "total": req.payment_amount, "currency": req.currency}}
    if req.reason:
        body["reason"] = _three_byte_utf8(req.reason)[:REASON_CHARS_MAX]
    if req.notify_url:
        body["notify_url"] = req.notify_url
    return body


def payment_from_transaction(config: WechatPayConfig, data: dict, payment_no: str) -> PaymentResult:
    """A Transaction (query answer or decrypted notification) as a PaymentResult. Anything that is
    not clearly about our payment, or a success without an integer amount, is UNKNOWN."""
    if data.get("out_trade_no") != payment_no or data.get("mchid") != config.mchid:
        return PaymentResult(Outcome.UNKNOWN, error="answer is about another payment or merchant")
    state = data.get("trade_state")
    outcome = TRADE_OUTCOMES.get(state)
    if outcome is None:
        return PaymentResult(Outcome.UNKNOWN, error=f"unknown trade_state {str(state)[:32]!r}")
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    total = _fen(amount.get("total"))
    if outcome is Outcome.SUCCEEDED and total is None:
        return PaymentResult(Outcome.UNKNOWN, error="paid without an integer amount")
    error = None if outcome in (Outcome.SUCCEEDED, Outcome.PENDING) else f"{state}: {data.get('trade_state_desc')}"
    return PaymentResult(outcome, channel_txn_no=data.get("transaction_id"), amount=total,
                         currency=amount.get("currency"), paid_at=parse_time(data.get("success_time")), error=error)


def refund_from_record(data: dict, refund_no: str, status_field: str = "status") -> RefundResult:
    """A refund (API answer: `status`; notification: `refund_status`) as a RefundResult."""
    if data.get("out_refund_no") != refund_no:
        return RefundResult(Outcome.UNKNOWN, error="answer is about another refund")
    status = data.get(status_field)
    outcome = REFUND_OUTCOMES.get(status)
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    refund = _fen(amount.get("refund"))
    if outcome is None or refund is None:
        return RefundResult(Outcome.UNKNOWN, error=f"unreadable refund (status {str(status)[:32]!r})")
    error = None if status in ("SUCCESS", "PROCESSING") else str(status)
    return RefundResult(outcome, channel_refund_no=data.get("refund_id"), amount=refund,
                        finished_at=parse_time(data.get("success_time")), error=error)
