"""The daily trade bill in WeChat Pay's own layout [W20][W23]: a 27-column header, one row per
payment (dated by its success time) and per refund (dated by its acceptance), every data field
prefixed with a backtick, yuan amounts with two decimals, fees with five, then a summary header
and a summary row. UTF-8 with a byte-order mark and CRLF line ends, as the real files come."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime

from .faults import FaultBook
from .models import Merchant, Refund, Trade
from .state import BEIJING

__all__ = ["DETAIL_HEADER", "SUMMARY_HEADER", "TradeBill", "render_tradebill"]

DETAIL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
                 "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
                 "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
PPM = 1_000_000


@dataclass(frozen=True)
class TradeBill:
    content: bytes  # the bill file, uncompressed
    hash_value: str  # SHA1 hex of `content` (what /v3/bill/tradebill answers)


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fee_yuan(fen: int) -> str:
    return _yuan(fen) + "000"


def _fee_fen(amount_fen: int, rate_ppm: int) -> int:
    """Fee rounded half up to the fen, as WeChat Pay charges it per order."""
    return (amount_fen * rate_ppm + PPM // 2) // PPM


def _rate(rate_ppm: int) -> str:
    return f"{rate_ppm / 10_000:.2f}%"


def _row(fields: list[str]) -> str:
    return ",".join("`" + f for f in fields)


def _payment_row(m: Merchant, t: Trade, amount_fen: int) -> tuple[str, int, int]:
    fee = _fee_fen(amount_fen, m.fee_rate_ppm)
    fields = [t.success_time.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), t.appid, t.mchid, "0", "",
              t.transaction_id, t.out_trade_no, t.openid or "", t.trade_type, "SUCCESS", "OTHERS", "CNY",
              _yuan(amount_fen), "0.00", "0", "0", "0.00", "0.00", "", "", t.description, t.attach or "",
              _fee_yuan(fee), _rate(m.fee_rate_ppm), _yuan(amount_fen), "0.00", ""]
    return _row(fields), amount_fen, fee


def _refund_row(m: Merchant, t: Trade, r: Refund, refund_fen: int) -> tuple[str, int, int]:
    fee = -_fee_fen(refund_fen, m.fee_rate_ppm)  # the fee on the refunded part comes back
    fields = [r.created_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), t.appid, t.mchid, "0", "",
              t.transaction_id, t.out_trade_no, t.openid or "", t.trade_type, "REFUND", "OTHERS", "CNY",
              "0.00", "0.00", r.refund_id, r.out_refund_no, _yuan(refund_fen), "0.00", "ORIGINAL", r.status,
              t.description, t.attach or "", _fee_yuan(fee), _rate(m.fee_rate_ppm), "0.00", _yuan(refund_fen), ""]
    return _row(fields), refund_fen, fee


def render_tradebill(merchant: Merchant, trades: list[Trade], refunds: list[Refund], bill_date: date,
                     bill_type: str, faults: FaultBook) -> TradeBill | None:
    """The bill for one Beijing day, or None when the day has no rows (NO_STATEMENT_EXIST)."""
    rows: list[tuple[str, int, int, int]] = []  # (line, paid fen, refunded fen, fee fen)
    changed = faults.has("bill_changed_amount")
    if bill_type in ("ALL", "SUCCESS"):
        for t in sorted((t for t in trades if t.success_time is not None
                         and t.success_time.astimezone(BEIJING).date() == bill_date), key=lambda t: t.success_time):
            line, paid, fee = _payment_row(merchant, t, t.total_fen + (1 if changed and not rows else 0))
            rows.append((line, paid, 0, fee))
    if bill_type in ("ALL", "REFUND"):
        by_no = {t.out_trade_no: t for t in trades}
        for r in sorted((r for r in refunds if r.created_at.astimezone(BEIJING).date() == bill_date),
                        key=lambda r: r.created_at):
            line, refunded, fee = _refund_row(merchant, by_no[r.out_trade_no], r, r.refund_fen)
            rows.append((line, 0, refunded, fee))
    if faults.has("bill_missing_row") and rows:
        rows.pop(0)
    if faults.has("bill_extra_row"):
        ghost = Trade(mchid=merchant.mchid, appid=merchant.appid, out_trade_no="GHOST" + bill_date.strftime("%Y%m%d"),
                      trade_type="NATIVE", description="ghost", total_fen=100, currency="CNY", notify_url="",
                      created_at=_noon(bill_date), time_expire=None,
                      request_fingerprint="", prepay={}, transaction_id="4200000000000000000000000000",
                      success_time=_noon(bill_date))
        line, paid, fee = _payment_row(merchant, ghost, ghost.total_fen)
        rows.append((line, paid, 0, fee))
    if not rows:
        return None
    paid = sum(r[1] for r in rows)
    refunded = sum(r[2] for r in rows)
    fees = sum(r[3] for r in rows)
    summary = _row([str(len(rows)), _yuan(paid), _yuan(refunded), "0.00", _fee_yuan(fees), _yuan(paid),
                    _yuan(refunded)])
    text = "\ufeff" + "\r\n".join([DETAIL_HEADER, *(r[0] for r in rows), SUMMARY_HEADER, summary]) + "\r\n"
    content = text.encode("utf-8")
    digest = hashlib.sha1(content).hexdigest()
    if faults.has("bill_wrong_hash"):
        digest = hashlib.sha1(content + b"x").hexdigest()
    return TradeBill(content, digest)


def _noon(bill_date: date) -> datetime:
    return datetime(bill_date.year, bill_date.month, bill_date.day, 12, tzinfo=BEIJING)
