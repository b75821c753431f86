"""Between the core's types and Alipay's vocabulary: products, trade statuses, amounts, times.

Amounts cross as yuan strings converted exactly (`spi.amounts`); a verified answer whose amount
does not parse is treated as unreadable (UNKNOWN), never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from piaohao.channels.spi import CreatePayment, Outcome, PaymentResult, Product, RefundRequest, RefundResult
from piaohao.channels.spi.amounts import AmountFormatError, fen_to_yuan, yuan_to_fen

from .wire import from_wire_time, to_wire_time

__all__ = [
    "AMOUNT_FEN_MAX", "PRODUCTS", "AlipayProduct", "payment_biz", "payment_result", "product_for", "refund_biz",
    "refund_query_result", "trade_outcome",
]

# Alipay's bound on total_amount for page/wap pay: [0.01, 100000000] yuan per payment.
AMOUNT_FEN_MAX = 100_000_000 * 100
SUBJECT_CHARS_MAX = 256
REFUND_REASON_CHARS_MAX = 256


@dataclass(frozen=True)
class AlipayProduct:
    product: Product
    method: str
    product_code: str


PRODUCTS = {
    "alipay.page": AlipayProduct(Product("alipay.page", amount_max_minor=AMOUNT_FEN_MAX), "alipay.trade.page.pay",
                                 "FAST_INSTANT_TRADE_PAY"),
    "alipay.wap": AlipayProduct(Product("alipay.wap", amount_max_minor=AMOUNT_FEN_MAX), "alipay.trade.wap.pay",
                                "QUICK_WAP_WAY"),
}
DEFAULT_PRODUCT = "alipay.page"

TRADE_OUTCOMES = {
    "WAIT_BUYER_PAY": Outcome.PENDING,
    "TRADE_SUCCESS": Outcome.SUCCEEDED,
    "TRADE_FINISHED": Outcome.SUCCEEDED,  # paid, and the refund window is over
    "TRADE_CLOSED": Outcome.CLOSED,
}


def product_for(name: str) -> AlipayProduct | None:
    return PRODUCTS.get(name or DEFAULT_PRODUCT)


def trade_outcome(trade_status: str | None, was_paid: bool) -> Outcome | None:
    """TRADE_CLOSED also means "paid, then fully refunded": the payment itself succeeded then."""
    outcome = TRADE_OUTCOMES.get(trade_status or "")
    if outcome is Outcome.CLOSED and was_paid:
        return Outcome.SUCCEEDED
    return outcome


def payment_biz(req: CreatePayment, product: AlipayProduct) -> str:
    biz = {"out_trade_no": req.payment_no, "total_amount": fen_to_yuan(req.amount),
           "subject": req.subject[:SUBJECT_CHARS_MAX], "product_code": product.product_code,
           "time_expire": to_wire_time(req.expires_at)}
    if product.product.name == "alipay.wap" and req.return_url:
        biz["quit_url"] = req.return_url  # where the buyer lands on leaving the wap cashier unpaid
    return json.dumps(biz, ensure_ascii=False, separators=(",", ":"))


def refund_biz(req: RefundRequest) -> dict[str, str]:
    biz = {"out_trade_no": req.payment_no, "refund_amount": fen_to_yuan(req.amount), "out_request_no": req.refund_no}
    if req.reason:
        biz["refund_reason"] = req.reason[:REFUND_REASON_CHARS_MAX]
    return biz


def payment_result(member: dict) -> PaymentResult:
    """A successful alipay.trade.query answer as the core's PaymentResult."""
    paid_at = from_wire_time(member.get("send_pay_date"))
    outcome = trade_outcome(member.get("trade_status"), paid_at is not None)
    if outcome is None:
        return PaymentResult(Outcome.UNKNOWN, error=f"unknown trade_status {member.get('trade_status')!r}")
    try:
        amount = yuan_to_fen(member.get("total_amount"))
    except AmountFormatError as e:
        return PaymentResult(Outcome.UNKNOWN, error=f"unreadable total_amount: {e}")
    return PaymentResult(outcome, channel_txn_no=member.get("trade_no"), amount=amount, currency="CNY",
                         paid_at=paid_at if outcome is Outcome.SUCCEEDED else None)


def refund_query_result(member: dict) -> RefundResult:
    """A successful alipay.trade.fastpay.refund.query answer: REFUND_SUCCESS, or nothing (no such refund)."""
    if member.get("refund_status") != "REFUND_SUCCESS":
        if not member.get("refund_status") and not member.get("refund_amount"):
            return RefundResult(Outcome.NOT_FOUND, error="Alipay has no refund with this out_request_no")
        return RefundResult(Outcome.PENDING, error=f"refund_status {member.get('refund_status')!r}")
    try:
        amount = yuan_to_fen(member.get("refund_amount"))
    except AmountFormatError as e:
        return RefundResult(Outcome.UNKNOWN, error=f"unreadable refund_amount: {e}")
    return RefundResult(Outcome.SUCCEEDED, amount=amount, finished_at=from_wire_time(member.get("gmt_refund_pay")))
