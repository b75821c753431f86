"""The fake Alipay's business rules: trades, refunds, notifications queued, bills kept.

Every public method is thread-safe (one lock) and answers the `<method>_response` member as a
dict, or raises `AlipayError` with Alipay's code / sub_code. Time comes from the injected clock
only, so tests decide when a trade expires or a notification is due.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from . import signing
from .faults import FaultBook
from .model import (
    TRADE_CLOSED,
    TRADE_FINISHED,
    TRADE_SUCCESS,
    WAIT_BUYER_PAY,
    App,
    Notification,
    Refund,
    Trade,
    beijing_text,
    fen_text,
    parse_beijing,
    parse_yuan,
)

__all__ = ["AlipayError", "AlipayFake", "NOTIFY_RETRY_S"]

# Alipay resends until answered `success`: 8 notifications in 25 hours (opendocs 270/105902).
NOTIFY_RETRY_S = (0, 4 * 60, 10 * 60, 10 * 60, 3600, 2 * 3600, 6 * 3600, 15 * 3600)
AMOUNT_FEN_MIN, AMOUNT_FEN_MAX = 1, 100_000_000 * 100  # total_amount in [0.01, 100000000]
DEFAULT_EXPIRY = timedelta(minutes=90)  # Alipay's default when neither timeout_express nor time_expire is given
FEE_RATE_PPM_DEFAULT = 6000  # 0.6 %, the common rate for page/wap pay
OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_]{1,64}")
OUT_REQUEST_NO = re.compile(r"[A-Za-z0-9_]{1,64}")
PAGE_PRODUCTS = {"alipay.trade.page.pay": {"FAST_INSTANT_TRADE_PAY"},
                 # QUICK_WAP_WAY is the documented code; QUICK_WAP_PAY is what python-alipay-sdk sends.
                 "alipay.trade.wap.pay": {"QUICK_WAP_WAY", "QUICK_WAP_PAY"}}
SUBJECT_CHARS_MAX = 256
BILL_URL_TTL = timedelta(seconds=30)


class AlipayError(Exception):
    def __init__(self, code: str, msg: str, sub_code: str | None = None, sub_msg: str | None = None):
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg

    def as_member(self) -> dict[str, str]:
        out = {"code": self.code, "msg": self.msg}
        if self.sub_code:
            out["sub_code"] = self.sub_code
            out["sub_msg"] = self.sub_msg or ""
        return out


def _biz_error(sub_code: str, sub_msg: str) -> AlipayError:
    return AlipayError("40004", "Business Failed", sub_code, sub_msg)


def _invalid(sub_msg: str) -> AlipayError:
    return _biz_error("ACQ.INVALID_PARAMETER", sub_msg)


def _fee(amount_fen: int, rate_ppm: int) -> int:
    return (amount_fen * rate_ppm + 500_000) // 1_000_000  # half up, to the fen


@dataclass
class BillLink:
    app_id: str
    bill_date: date
    expires_at: datetime


class AlipayFake:
    """Alipay as one merchant app sees it. `now` returns an aware datetime."""

    def __init__(self, now: Callable[[], datetime] | None = None, *, fee_rate_ppm: int = FEE_RATE_PPM_DEFAULT,
                 notify_retry_s: tuple[float, ...] = NOTIFY_RETRY_S):
        self.now = now or (lambda: datetime.now(UTC))
        self.fee_rate_ppm = fee_rate_ppm
        self.notify_retry_s = notify_retry_s
        self.key = signing.generate_private_key()
        self.faults = FaultBook()
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.trades: dict[tuple[str, str], Trade] = {}
        self.notifications: list[Notification] = []
        self.bill_links: dict[str, BillLink] = {}
        self._seq = itertools.count(1)

    # --- onboarding ----------------------------------------------------------------------------

    @property
    def alipay_public_key_pem(self) -> str:
        return signing.public_pem(self.key)

    def register_app(self, app_public_key: str, app_id: str | None = None) -> App:
        """Onboard a merchant app with its uploaded public key; answers the app (id, PID)."""
        with self.lock:
            app_id = app_id or f"2021{next(self._seq):012d}"
            pid = f"2088{secrets.randbelow(10**12):012d}"
            app = App(app_id, signing.load_public_key(app_public_key), pid, f"seller{len(self.apps) + 1}@example.com")
            self.apps[app_id] = app
            return app

    # --- trades --------------------------------------------------------------------------------

    def trade(self, app_id: str, out_trade_no: str) -> Trade | None:
        with self.lock:
            trade = self.trades.get((app_id, out_trade_no))
            if trade is not None:
                self._expire_if_due(trade)
            return trade

    def find_trade(self, out_trade_no: str, app_id: str | None = None) -> Trade:
        """For tests and the control endpoint: the trade with this number (in any app if not given)."""
        with self.lock:
            for (a, o), trade in self.trades.items():
                if o == out_trade_no and app_id in (None, a):
                    self._expire_if_due(trade)
                    return trade
        raise KeyError(out_trade_no)

    def open_page(self, app: App, method: str, biz: dict, notify_url: str) -> Trade:
        """The buyer's browser opened a page/wap pay URL: the trade exists from now on."""
        out_trade_no = biz.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not OUT_TRADE_NO.fullmatch(out_trade_no):
            raise _invalid("out_trade_no is missing or not 1-64 letters, digits, underscores")
        total_fen = parse_yuan(biz.get("total_amount"))
        if total_fen is None or not AMOUNT_FEN_MIN <= total_fen <= AMOUNT_FEN_MAX:
            raise _invalid("total_amount must be a yuan string with at most 2 decimals in [0.01, 100000000]")
        subject = biz.get("subject")
        if not isinstance(subject, str) or not subject or len(subject) > SUBJECT_CHARS_MAX:
            raise _invalid("subject is missing or too long")
        if biz.get("product_code") not in PAGE_PRODUCTS[method]:
            raise _biz_error("ACQ.PRODUCT_CODE_NOT_SUPPORT", f"product_code {biz.get('product_code')!r} not allowed")
        now = self.now()
        expires_at = self._expiry(biz, now)
        with self.lock:
            trade = self.trade(app.app_id, out_trade_no)
            if trade is not None:
                if trade.total_fen != total_fen or trade.subject != subject:
                    raise _biz_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
                if trade.status != WAIT_BUYER_PAY:
                    raise _biz_error("ACQ.TRADE_HAS_SUCCESS" if trade.paid_at else "ACQ.TRADE_HAS_CLOSE",
                                     "交易已支付" if trade.paid_at else "交易已经关闭")
                return trade
            if expires_at <= now:
                raise _biz_error("ACQ.TRADE_HAS_CLOSE", "订单已超时关闭")
            trade = Trade(app.app_id, out_trade_no, self._trade_no(now), total_fen, subject,
                          biz["product_code"], notify_url, now, expires_at)
            self.trades[(app.app_id, out_trade_no)] = trade
            return trade

    def _expiry(self, biz: dict, now: datetime) -> datetime:
        if "time_expire" in biz:
            at = parse_beijing(biz["time_expire"])
            if at is None:
                raise _invalid("time_expire must be yyyy-MM-dd HH:mm:ss")
            return at
        if "timeout_express" in biz:
            m = re.fullmatch(r"([1-9][0-9]*)([mhd])", str(biz["timeout_express"]))
            if not m:
                raise _invalid("timeout_express must be like 90m, 2h, 1d")
            unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
            return now + timedelta(**{unit: int(m.group(1))})
        return now + DEFAULT_EXPIRY

    def _trade_no(self, now: datetime) -> str:
        return f"{beijing_text(now)[:10].replace('-', '')}22001{next(self._seq):06d}{secrets.randbelow(10**8):08d}"

    def _expire_if_due(self, trade: Trade) -> None:
        if trade.status == WAIT_BUYER_PAY and self.now() >= trade.expires_at:
            trade.status, trade.closed_at = TRADE_CLOSED, trade.expires_at
            self._notify(trade)

    def pay(self, out_trade_no: str, app_id: str | None = None) -> Trade:
        """The buyer pays (test hook). Only an open, unexpired trade can be paid."""
        with self.lock:
            trade = self.find_trade(out_trade_no, app_id)
            if trade.status != WAIT_BUYER_PAY:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", f"trade is {trade.status}")
            trade.status, trade.paid_at = TRADE_SUCCESS, self.now()
            trade.fee_fen = _fee(trade.total_fen, self.fee_rate_ppm)
            self._notify(trade)
            return trade

    def finish(self, out_trade_no: str, app_id: str | None = None) -> Trade:
        """The refund window ends (test hook): TRADE_SUCCESS -> TRADE_FINISHED, notified."""
        with self.lock:
            trade = self.find_trade(out_trade_no, app_id)
            if trade.status != TRADE_SUCCESS:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", f"trade is {trade.status}")
            trade.status = TRADE_FINISHED
            self._notify(trade)
            return trade

    def _lookup(self, app: App, biz: dict) -> Trade:
        trade_no, out_trade_no = biz.get("trade_no"), biz.get("out_trade_no")
        if not trade_no and not out_trade_no:
            raise _invalid("out_trade_no or trade_no is required")
        with self.lock:
            for trade in self.trades.values():
                if trade.app_id == app.app_id and (trade.trade_no == trade_no if trade_no
                                                   else trade.out_trade_no == out_trade_no):
                    self._expire_if_due(trade)
                    return trade
        raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")

    def query(self, app: App, biz: dict) -> dict:
        with self.lock:
            trade = self._lookup(app, biz)
            out = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                   "buyer_logon_id": trade.buyer_logon_id, "trade_status": trade.status,
                   "total_amount": fen_text(trade.total_fen)}
            if trade.paid_at is not None:
                paid = fen_text(trade.total_fen)
                out.update({"buyer_pay_amount": paid, "receipt_amount": paid, "invoice_amount": paid,
                            "point_amount": "0.00", "send_pay_date": beijing_text(trade.paid_at),
                            "buyer_user_id": trade.buyer_id,
                            "fund_bill_list": [{"amount": paid, "fund_channel": "ALIPAYACCOUNT"}]})
            return out

    def close(self, app: App, biz: dict) -> dict:
        with self.lock:
            trade = self._lookup(app, biz)
            if trade.status != WAIT_BUYER_PAY:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade.status, trade.closed_at = TRADE_CLOSED, self.now()
            self._notify(trade)
            return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, app: App, biz: dict) -> dict:
        amount_fen = parse_yuan(biz.get("refund_amount"))
        if amount_fen is None or amount_fen < AMOUNT_FEN_MIN:
            raise _invalid("refund_amount must be a yuan string with at most 2 decimals, at least 0.01")
        with self.lock:
            trade = self._lookup(app, biz)
            out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
            if not OUT_REQUEST_NO.fullmatch(out_request_no):
                raise _invalid("out_request_no must be 1-64 letters, digits, underscores")
            earlier = trade.refunds.get(out_request_no)
            if earlier is not None:
                if earlier.amount_fen != amount_fen:
                    raise _biz_error("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致")
                return self._refund_member(trade, earlier, fund_change=False)
            if trade.status == TRADE_FINISHED:
                raise _biz_error("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if trade.status != TRADE_SUCCESS:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade.refunded_fen + amount_fen > trade.total_fen:
                raise _biz_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            fee_left = trade.fee_fen - sum(r.fee_returned_fen for r in trade.refunds.values())
            fee_back = fee_left if trade.refunded_fen + amount_fen == trade.total_fen else min(
                fee_left, _fee(amount_fen, self.fee_rate_ppm))
            refund = Refund(out_request_no, amount_fen, fee_back, self.now(), str(biz.get("refund_reason") or ""))
            trade.refunds[out_request_no] = refund
            if trade.refunded_fen == trade.total_fen:
                trade.status, trade.closed_at = TRADE_CLOSED, refund.refunded_at
            self._notify(trade, refund)
            return self._refund_member(trade, refund, fund_change=True)

    def _refund_member(self, trade: Trade, refund: Refund, fund_change: bool) -> dict:
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": trade.buyer_logon_id, "buyer_user_id": trade.buyer_id,
                "fund_change": "Y" if fund_change else "N", "refund_fee": fen_text(trade.refunded_fen),
                "send_back_fee": fen_text(refund.amount_fen), "gmt_refund_pay": beijing_text(refund.refunded_at)}

    def refund_query(self, app: App, biz: dict) -> dict:
        out_request_no = biz.get("out_request_no")
        if not isinstance(out_request_no, str) or not out_request_no:
            raise _invalid("out_request_no is required")
        with self.lock:
            trade = self._lookup(app, biz)
            out = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                   "out_request_no": out_request_no}
            refund = trade.refunds.get(out_request_no)
            if refund is not None:  # nothing more when there is no such refund: "not received"
                out.update({"refund_status": "REFUND_SUCCESS", "refund_amount": fen_text(refund.amount_fen),
                            "total_amount": fen_text(trade.total_fen), "refund_reason": refund.reason,
                            "gmt_refund_pay": beijing_text(refund.refunded_at)})
            return out

    # --- notifications -------------------------------------------------------------------------

    def _notify(self, trade: Trade, refund: Refund | None = None) -> None:
        """Queue the notification of a trade state change (called under the lock)."""
        if not trade.notify_url:
            return
        app = self.apps[trade.app_id]
        now = self.now()
        params = {"notify_time": beijing_text(now), "notify_type": "trade_status_sync",
                  "notify_id": secrets.token_hex(16), "app_id": app.app_id, "auth_app_id": app.app_id,
                  "charset": "utf-8", "version": "1.0", "sign_type": "RSA2", "trade_no": trade.trade_no,
                  "out_trade_no": trade.out_trade_no, "buyer_id": trade.buyer_id,
                  "buyer_logon_id": trade.buyer_logon_id, "seller_id": app.pid, "seller_email": app.seller_email,
                  "trade_status": trade.status, "total_amount": fen_text(trade.total_fen), "subject": trade.subject,
                  "gmt_create": beijing_text(trade.created_at)}
        if trade.paid_at is not None:
            paid = fen_text(trade.total_fen)
            params.update({"receipt_amount": paid, "invoice_amount": paid, "buyer_pay_amount": paid,
                           "point_amount": "0.00", "gmt_payment": beijing_text(trade.paid_at),
                           "fund_bill_list": f'[{{"amount":"{paid}","fundChannel":"ALIPAYACCOUNT"}}]'})
        if refund is not None:
            params.update({"out_biz_no": refund.out_request_no, "refund_fee": fen_text(trade.refunded_fen),
                           "gmt_refund": beijing_text(refund.refunded_at)})
        if trade.closed_at is not None:
            params["gmt_close"] = beijing_text(trade.closed_at)
        self.notifications.append(Notification(params["notify_id"], app.app_id, trade.out_trade_no,
                                               trade.notify_url, params, now))

    def notifications_for(self, out_trade_no: str) -> list[Notification]:
        with self.lock:
            return [n for n in self.notifications if n.out_trade_no == out_trade_no]

    # --- bills ---------------------------------------------------------------------------------

    def bill_link(self, app: App, biz: dict) -> str:
        """A token for the bill of one past day (valid `BILL_URL_TTL`)."""
        if biz.get("bill_type") != "trade":
            raise _invalid("bill_type must be trade")
        try:
            bill_date = date.fromisoformat(str(biz.get("bill_date")))
        except ValueError:
            raise _invalid("bill_date must be yyyy-MM-dd") from None
        now = self.now()
        if bill_date >= datetime.fromisoformat(beijing_text(now)).date():
            raise _biz_error("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.bill_links[token] = BillLink(app.app_id, bill_date, now + BILL_URL_TTL)
        return token

    def redeem_bill_link(self, token: str) -> BillLink | None:
        with self.lock:
            link = self.bill_links.get(token)
            if link is None or self.now() > link.expires_at:
                return None
            return link

    def trades_of(self, app_id: str) -> list[Trade]:
        with self.lock:
            return [t for t in self.trades.values() if t.app_id == app_id]
