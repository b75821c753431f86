"""Trade rows: the one place trades are looked up (by number or by the merchant's key), locked,
shown to their merchant, and inserted for internal purposes (top-ups)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import orjson
import structlog
from sqlalchemy import Connection, select

from piaohao.db.schema import trades
from piaohao.domain import trades as trade_states
from piaohao.kernel.errors import InvalidRequest, TradeNotFound
from piaohao.kernel.ids import new_id, new_token
from piaohao.kernel.money import is_valid_amount
from piaohao.platform import Platform
from piaohao.services.views import load_components, load_orders, trade_view

log = structlog.get_logger(__name__)


def find_by_out_trade_no(p: Platform, merchant_id: str, out_trade_no: str):
    with p.db.read() as conn:
        return conn.execute(select(trades).where(
            trades.c.merchant_id == merchant_id, trades.c.out_trade_no == out_trade_no)).mappings().first()


def get_trade(p: Platform, merchant_id: str, *, trade_no: str | None = None, out_trade_no: str | None = None) -> dict:
    q = select(trades).where(trades.c.merchant_id == merchant_id, trades.c.purpose == "sale")
    if trade_no is not None:
        q = q.where(trades.c.trade_no == trade_no)
    elif out_trade_no is not None:
        q = q.where(trades.c.out_trade_no == out_trade_no)
    else:
        raise InvalidRequest("give trade_no or out_trade_no")
    with p.db.read() as conn:
        row = conn.execute(q).mappings().first()
        if row is None:
            raise TradeNotFound("no such trade")
        return trade_view(p, row, load_components(conn, row["trade_no"]), load_orders(conn, p, row["trade_no"]))


def lock_trade(conn: Connection, trade_no: str):
    """The trade row, locked until the end of the transaction (SQLite: the writer lock already is)."""
    return conn.execute(select(trades).where(trades.c.trade_no == trade_no).with_for_update()).mappings().first()


def create_internal_trade(conn: Connection, p: Platform, *, merchant_id: str, app_id: str, purpose: str,
                          out_trade_no: str, amount: int, currency: str, subject: str,
                          member_id: str | None = None, expires_at: datetime | None = None,
                          return_url: str | None = None) -> dict:
    """Insert an internal trade (a top-up, ...) in the caller's transaction and return its row.

    Internal trades reuse the cashier, payment records, active query and expiry. They are never
    visible through /v1/trades (`purpose` != "sale"), never notify `trade.*` events, and their
    `out_trade_no` carries a ":" that merchant keys cannot, so they never collide with sales. What
    happens when one is paid or closes is decided by the dispatch tables `payments.PAID_HANDLERS`
    and `closing.CLOSED_HANDLERS`: a purpose missing from them is refused, never taken for a sale.
    """
    if purpose == "sale" or ":" not in out_trade_no:
        raise ValueError("internal trades have a purpose other than 'sale' and an out_trade_no with ':'")
    if not is_valid_amount(amount) or amount == 0:
        raise InvalidRequest("amount must be an integer of minor units between 1 and 10^15")
    now = p.clock.now()
    if expires_at is None:
        expires_at = now + timedelta(seconds=p.settings.trade_timeout_default_s)
    fingerprint = hashlib.sha256(orjson.dumps(
        {"purpose": purpose, "out_trade_no": out_trade_no, "amount": amount, "currency": currency},
        option=orjson.OPT_SORT_KEYS)).hexdigest()
    row = {
        "trade_no": new_id("tr"), "merchant_id": merchant_id, "app_id": app_id, "out_trade_no": out_trade_no,
        "amount": amount, "currency": currency, "subject": subject, "notify_url": None,
        "return_url": return_url, "buyer_id": None, "status": trade_states.PENDING,
        "refunded_amount": 0, "request_hash": fingerprint, "cashier_token": new_token(),
        "paid_payment_no": None, "close_reason": None, "expires_at": expires_at, "paid_at": None,
        "closed_at": None, "created_at": now, "updated_at": now, "member_id": member_id, "purpose": purpose,
    }
    conn.execute(trades.insert().values(**row))
    log.info("trade.created_internal", trade_no=row["trade_no"], purpose=purpose, merchant_id=merchant_id,
             amount=amount)
    return row
