"""The fake's business state: merchants, trades, refunds and the notification queue, in memory,
behind one lock. It knows WeChat Pay's rules (re-entry with identical parameters only, close
only while unpaid, refunds idempotent on `out_refund_no` and capped at the paid amount) and
nothing about HTTP or signatures."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from . import validation as v
from .errors import ApiError, invalid_request, param_error
from .faults import FaultBook
from .models import Merchant, Notification, Refund, Trade

__all__ = ["BEIJING", "FakeState", "TRADE_TYPES", "wechat_time"]

BEIJING = timezone(timedelta(hours=8))
TRADE_TYPES = {"native": "NATIVE", "h5": "MWEB", "jsapi": "JSAPI"}
# Wait after failed try i+1 [W9]: 15 retries after the first try, about 24 h in all.
RETRY_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
TRADE_STATE_DESC = {"NOTPAY": "未支付", "SUCCESS": "支付成功", "CLOSED": "订单已关闭", "REFUND": "转入退款"}


def wechat_time(moment: datetime) -> str:
    """RFC 3339 in Beijing time, as WeChat Pay writes it: 2018-06-08T10:34:56+08:00."""
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


class FakeState:
    def __init__(self, now: Callable[[], datetime] | None = None, *, refund_settle_delay_s: float = 0.0):
        self.now = now or (lambda: datetime.now(UTC))
        self.refund_settle_delay_s = refund_settle_delay_s
        self.lock = threading.RLock()
        self.faults = FaultBook()
        self.merchants: dict[str, Merchant] = {}
        self.trades: dict[tuple[str, str], Trade] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.notifications: list[Notification] = []

    # --- merchants --------------------------------------------------------------------------

    def register_merchant(self, merchant: Merchant) -> Merchant:
        if len(merchant.apiv3_key.encode()) != 32:
            raise ValueError("the APIv3 key is 32 ASCII characters")
        merchant.api_serial_no = merchant.api_serial_no.upper()
        with self.lock:
            self.merchants[merchant.mchid] = merchant
        return merchant

    def merchant(self, mchid: str) -> Merchant | None:
        with self.lock:
            return self.merchants.get(mchid)

    # --- trades -----------------------------------------------------------------------------

    def create_order(self, mchid: str, product: str, body: dict) -> dict:
        merchant = self.merchants[mchid]
        appid = v.text(body, "appid", max_len=32)
        if v.text(body, "mchid", max_len=32) != mchid:
            raise param_error("mchid与请求签名中的商户号不一致", "mchid", body.get("mchid"))
        if appid != merchant.appid:
            raise invalid_request("appid和mch_id不匹配")
        description = v.text(body, "description", max_len=127)
        out_trade_no = v.text(body, "out_trade_no", max_len=32, pattern=v.OUT_TRADE_NO)
        notify_url = v.text(body, "notify_url", max_len=256)
        if not notify_url.startswith(("https://", "http://")):
            raise param_error("notify_url格式不正确", "notify_url", notify_url)
        amount = v.obj(body, "amount")
        total = v.amount_fen(amount, "total", "amount.total")
        currency = v.currency(amount, "amount.currency")
        time_expire = v.rfc3339(body["time_expire"], "time_expire") if "time_expire" in body else None
        attach = v.text(body, "attach", max_len=128, required=False)
        openid = None
        if product == "jsapi":
            openid = v.text(v.obj(body, "payer"), "openid", max_len=128, path="payer.openid")
        if product == "h5":
            scene = v.obj(body, "scene_info")
            v.text(scene, "payer_client_ip", max_len=45, path="scene_info.payer_client_ip")
            v.text(v.obj(scene, "h5_info"), "type", max_len=32, path="scene_info.h5_info.type")
        fingerprint = json.dumps(body, sort_keys=True, ensure_ascii=False)
        with self.lock:
            now = self.now()
            existing = self.trades.get((mchid, out_trade_no))
            if existing is not None:
                if existing.trade_state in ("SUCCESS", "REFUND"):
                    raise ApiError(400, "ORDER_PAID", "该订单已支付")
                if existing.trade_state == "CLOSED":
                    raise ApiError(400, "ORDER_CLOSED", "订单已关闭")
                if existing.request_fingerprint != fingerprint or existing.trade_type != TRADE_TYPES[product]:
                    raise invalid_request("请求重入时，参数与首次请求时不一致")
                return dict(existing.prepay)
            prepay_id = f"wx{now.astimezone(BEIJING):%d%H%M%S}{secrets.token_hex(13)}"
            prepay = {"native": {"code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)[:7]}"},
                      "h5": {"h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?"
                                       f"prepay_id={prepay_id}&package={_digits(10)}"},
                      "jsapi": {"prepay_id": prepay_id}}[product]
            self.trades[(mchid, out_trade_no)] = Trade(
                mchid=mchid, appid=appid, out_trade_no=out_trade_no, trade_type=TRADE_TYPES[product],
                description=description, total_fen=total, currency=currency, notify_url=notify_url,
                created_at=now, time_expire=time_expire, request_fingerprint=fingerprint, prepay=prepay,
                attach=attach, openid=openid)
            return dict(prepay)

    def _trade(self, mchid: str, out_trade_no: str) -> Trade:
        trade = self.trades.get((mchid, out_trade_no))
        if trade is None:
            raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return trade

    def transaction(self, trade: Trade) -> dict:
        """A trade as the query API and the payment notification write it."""
        out = {"appid": trade.appid, "mchid": trade.mchid, "out_trade_no": trade.out_trade_no,
               "trade_type": trade.trade_type, "trade_state": trade.trade_state,
               "trade_state_desc": TRADE_STATE_DESC[trade.trade_state],
               "amount": {"total": trade.total_fen, "currency": trade.currency}}
        if trade.attach is not None:
            out["attach"] = trade.attach
        if trade.transaction_id is not None:
            out.update({"transaction_id": trade.transaction_id, "bank_type": "OTHERS",
                        "success_time": wechat_time(trade.success_time),
                        "payer": {"openid": trade.openid}})
            out["amount"].update({"payer_total": trade.total_fen, "payer_currency": trade.currency})
        return out

    def query_order(self, mchid: str, out_trade_no: str) -> dict:
        with self.lock:
            return self.transaction(self._trade(mchid, out_trade_no))

    def close_order(self, mchid: str, out_trade_no: str, body: dict) -> None:
        if body.get("mchid") != mchid:
            raise param_error("mchid为必填项，且须与请求签名中的商户号一致", "mchid", body.get("mchid"))
        with self.lock:
            trade = self._trade(mchid, out_trade_no)
            if trade.trade_state in ("SUCCESS", "REFUND"):
                raise ApiError(400, "ORDER_PAID", "订单已支付")
            trade.trade_state = "CLOSED"  # re-entrant: closing a closed trade answers 204 again

    def pay(self, out_trade_no: str, mchid: str | None = None, openid: str | None = None) -> dict:
        """The buyer pays (test-only). Queues the TRANSACTION.SUCCESS notification."""
        with self.lock:
            matches = [t for (m, no), t in self.trades.items() if no == out_trade_no and mchid in (None, m)]
            if len(matches) != 1:
                raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
            trade = matches[0]
            now = self.now()
            if trade.trade_state == "CLOSED":
                raise ApiError(400, "ORDER_CLOSED", "订单已关闭")
            if trade.trade_state != "NOTPAY":
                return self.transaction(trade)  # paying twice changes nothing
            if trade.time_expire is not None and now > trade.time_expire:
                raise ApiError(400, "ORDER_EXPIRED", "订单已过期")
            trade.trade_state = "SUCCESS"
            trade.transaction_id = "4200" + _digits(24)
            trade.success_time = now
            trade.openid = trade.openid or openid or f"o{secrets.token_urlsafe(21)[:27]}"  # the buyer's openid
            resource = self.transaction(trade)
            self._queue(trade.mchid, trade.notify_url, "TRANSACTION.SUCCESS", "transaction", "支付成功", resource,
                        trade.out_trade_no)
            return resource

    # --- refunds ----------------------------------------------------------------------------

    def create_refund(self, mchid: str, body: dict) -> dict:
        out_refund_no = v.text(body, "out_refund_no", max_len=64, pattern=v.OUT_REFUND_NO)
        out_trade_no = v.text(body, "out_trade_no", max_len=32, required="transaction_id" not in body)
        transaction_id = v.text(body, "transaction_id", max_len=32, required=False)
        amount = v.obj(body, "amount")
        refund = v.amount_fen(amount, "refund", "amount.refund")
        total = v.amount_fen(amount, "total", "amount.total")
        currency = v.text(amount, "currency", max_len=16, path="amount.currency")
        if currency != "CNY":
            raise param_error("币种不支持", "amount.currency", currency)
        reason = v.text(body, "reason", max_len=80, required=False)
        notify_url = v.text(body, "notify_url", max_len=256, required=False)
        with self.lock:
            trade = self._refundable_trade(mchid, out_trade_no, transaction_id)
            existing = self.refunds.get((mchid, out_refund_no))
            if existing is not None:
                if (existing.out_trade_no, existing.refund_fen, existing.total_fen) != \
                        (trade.out_trade_no, refund, total):
                    raise invalid_request("请求参数与首次请求时不一致")
                return self.refund_record(existing)
            if total != trade.total_fen:
                raise invalid_request("订单金额与原订单金额不一致")
            if trade.trade_state not in ("SUCCESS", "REFUND"):
                raise invalid_request("订单未支付，不能退款")
            if refund > trade.total_fen - trade.refunded_fen:
                raise invalid_request("申请退款金额超过订单可退金额")
            trade.refunded_fen += refund
            trade.trade_state = "REFUND"
            record = Refund(mchid=mchid, out_trade_no=trade.out_trade_no, transaction_id=trade.transaction_id,
                            out_refund_no=out_refund_no, refund_id="50" + _digits(30), refund_fen=refund,
                            total_fen=total, currency=currency, reason=reason, notify_url=notify_url,
                            created_at=self.now())
            self.refunds[(mchid, out_refund_no)] = record
            return self.refund_record(record)

    def _refundable_trade(self, mchid: str, out_trade_no: str | None, transaction_id: str | None) -> Trade:
        for (m, no), trade in self.trades.items():
            if m == mchid and (no == out_trade_no or (transaction_id and trade.transaction_id == transaction_id)):
                return trade
        raise ApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")

    def refund_record(self, r: Refund) -> dict:
        out = {"refund_id": r.refund_id, "out_refund_no": r.out_refund_no, "transaction_id": r.transaction_id,
               "out_trade_no": r.out_trade_no, "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
               "create_time": wechat_time(r.created_at), "status": r.status, "funds_account": "AVAILABLE",
               "amount": {"total": r.total_fen, "refund": r.refund_fen, "from": [], "payer_total": r.total_fen,
                          "payer_refund": r.refund_fen, "settlement_refund": r.refund_fen,
                          "settlement_total": r.total_fen, "discount_refund": 0, "currency": r.currency}}
        if r.success_time is not None:
            out["success_time"] = wechat_time(r.success_time)
        return out

    def query_refund(self, mchid: str, out_refund_no: str) -> dict:
        with self.lock:
            record = self.refunds.get((mchid, out_refund_no))
            if record is None:
                raise ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return self.refund_record(record)

    def finish_refund(self, out_refund_no: str, status: str = "SUCCESS", mchid: str | None = None) -> dict:
        """Settle a PROCESSING refund (test-only, or the notifier after `refund_settle_delay_s`)."""
        if status not in ("SUCCESS", "CLOSED", "ABNORMAL"):
            raise ValueError(f"not a final refund status: {status}")
        with self.lock:
            matches = [r for (m, no), r in self.refunds.items() if no == out_refund_no and mchid in (None, m)]
            if len(matches) != 1:
                raise ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            record = matches[0]
            if record.status != "PROCESSING":
                return self.refund_record(record)
            record.status = status
            if status == "SUCCESS":
                record.success_time = self.now()
            if status == "CLOSED":  # the money goes back to the refundable balance
                self._trade(record.mchid, record.out_trade_no).refunded_fen -= record.refund_fen
            if record.notify_url:
                summary = {"SUCCESS": "退款成功", "CLOSED": "退款关闭", "ABNORMAL": "退款异常"}[status]
                self._queue(record.mchid, record.notify_url, f"REFUND.{status}", "refund", summary,
                            self._refund_resource(record), record.out_trade_no)
            return self.refund_record(record)

    def _refund_resource(self, r: Refund) -> dict:
        out = {"mchid": r.mchid, "transaction_id": r.transaction_id, "out_trade_no": r.out_trade_no,
               "refund_id": r.refund_id, "out_refund_no": r.out_refund_no, "refund_status": r.status,
               "user_received_account": "支付用户零钱",
               "amount": {"total": r.total_fen, "refund": r.refund_fen, "payer_total": r.total_fen,
                          "payer_refund": r.refund_fen}}
        if r.success_time is not None:
            out["success_time"] = wechat_time(r.success_time)
        return out

    def settle_due_refunds(self) -> int:
        with self.lock:
            due = [r for r in self.refunds.values() if r.status == "PROCESSING"
                   and self.now() >= r.created_at + timedelta(seconds=self.refund_settle_delay_s)]
            for record in due:
                self.finish_refund(record.out_refund_no, "SUCCESS", record.mchid)
            return len(due)

    # --- notifications ----------------------------------------------------------------------

    def _queue(self, mchid: str, url: str, event_type: str, original_type: str, summary: str, resource: dict,
               out_trade_no: str) -> None:
        if self.faults.has("no_notification", out_trade_no):
            return
        now = self.now()
        self.notifications.append(Notification(
            id=str(uuid.uuid4()), mchid=mchid, url=url, event_type=event_type, original_type=original_type,
            summary=summary, resource=resource, out_trade_no=out_trade_no, create_time=now, next_at=now))

    def due_notifications(self) -> list[Notification]:
        with self.lock:
            now = self.now()
            return [n for n in self.notifications
                    if (not n.acked and not n.given_up and n.next_at <= now) or n.extra_after_ack]

    def record_answer(self, n: Notification, status: int) -> None:
        with self.lock:
            n.answers.append(status)
            if n.extra_after_ack:
                n.extra_after_ack = False
                return
            n.attempts += 1
            if status in (200, 204):
                n.acked = True
                n.extra_after_ack = self.faults.has("duplicate_notification", n.out_trade_no)
            elif n.attempts > len(RETRY_S):
                n.given_up = True
            else:
                n.next_at = self.now() + timedelta(seconds=RETRY_S[n.attempts - 1])
