"""Trade use case: create (idempotent on the merchant's out_trade_no). Reading and internal trades
are `trade_store`; closing is `closing`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import orjson
import structlog
from sqlalchemy import Connection, select

from piaohao.clearing.orders import create_orders
from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema import trades
from piaohao.db.schema_members import members
from piaohao.domain import trades as trade_states
from piaohao.domain.splits import Order, Split, validate_orders
from piaohao.domain.trades import payment_expiry
from piaohao.kernel.clock import to_utc
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InvalidRequest,
    MemberNotFound,
    TradeExpired,
    ZeroAmount,
)
from piaohao.kernel.ids import new_id, new_token
from piaohao.kernel.invariants import require
from piaohao.kernel.money import is_valid_amount
from piaohao.kernel.outbound import check_urls
from piaohao.platform import Platform
from piaohao.services import trade_store
from piaohao.services.views import load_components, load_orders, trade_view

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewTrade:
    out_trade_no: str
    amount: int
    currency: str
    subject: str
    notify_url: str | None = None
    return_url: str | None = None
    expires_at: datetime | None = None
    order_created_at: datetime | None = None
    order_timeout_s: int | None = None
    buyer_id: str | None = None
    member_id: str | None = None
    orders: list[dict] | None = None  # 合併支付: [{out_order_no, sub_merchant_id, amount, subsidy_amount, splits}]

    def fingerprint(self) -> str:
        """What makes two create requests "the same body": every field, instants normalised to UTC.
        A shallow copy: `asdict` deep-copied the orders only for orjson to read them (12 × slower)."""
        fields = dict(self.__dict__)
        if fields["orders"] is None:
            del fields["orders"]  # trades without orders keep the fingerprint they always had
        for k in ("expires_at", "order_created_at"):
            if fields[k] is not None:
                fields[k] = to_utc(fields[k]).isoformat()
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_trade(p: Platform, merchant_id: str, app_id: str, req: NewTrade) -> tuple[dict, bool]:
    """Returns (trade view, created). The same request again returns the same trade, created=False."""
    check_urls(allow_private=p.settings.outbound_private_allowed, notify_url=req.notify_url, return_url=req.return_url)
    if not is_valid_amount(req.amount):
        raise InvalidRequest("amount must be an integer of minor units between 0 and 10^15")
    if req.amount == 0:
        raise ZeroAmount("a zero-amount order completes without payment: no trade is created")
    fingerprint = req.fingerprint()
    now = p.clock.now()
    orders = _parse_orders(p, req)
    if req.member_id is not None:
        _check_member(p, merchant_id, req.member_id, req.currency)
    expires_at = payment_expiry(
        now, expires_at=req.expires_at, order_created_at=req.order_created_at, order_timeout_s=req.order_timeout_s,
        default_timeout_s=p.settings.trade_timeout_default_s, max_timeout_s=p.settings.trade_timeout_max_s)
    if expires_at <= now:
        # A replay of a trade created while the order was still open answers the trade, not an error.
        existing = trade_store.find_by_out_trade_no(p, merchant_id, req.out_trade_no)
        if existing is not None:
            return _replay(p, existing, fingerprint), False
        raise TradeExpired("the order has already expired")
    row = {
        "trade_no": new_id("tr"), "merchant_id": merchant_id, "app_id": app_id, "out_trade_no": req.out_trade_no,
        "amount": req.amount, "currency": req.currency, "subject": req.subject, "notify_url": req.notify_url,
        "return_url": req.return_url, "buyer_id": req.buyer_id, "status": trade_states.PENDING,
        "refunded_amount": 0, "request_hash": fingerprint, "cashier_token": new_token(),
        "paid_payment_no": None, "close_reason": None, "expires_at": expires_at, "paid_at": None,
        "closed_at": None, "created_at": now, "updated_at": now, "member_id": req.member_id, "purpose": "sale",
    }
    # Insert first: the unique (merchant, out_trade_no) constraint decides, in one round trip,
    # whether this is a new trade or a replay (also when 20 identical requests race).
    def tx(conn: Connection):
        inserted = insert_if_absent(conn, trades, row, ("merchant_id", "out_trade_no"))
        if not inserted or not orders:
            return inserted, []

        create_orders(conn, p, row, orders, now)  # same transaction: a refusal leaves no trade behind
        return inserted, load_orders(conn, p, row["trade_no"])

    inserted, order_list = p.db.write(tx)
    if not inserted:
        existing = trade_store.find_by_out_trade_no(p, merchant_id, req.out_trade_no)
        require(existing is not None, "a conflicting trade must exist")
        return _replay(p, existing, fingerprint), False
    log.info("trade.created", trade_no=row["trade_no"], merchant_id=merchant_id, amount=req.amount)
    return trade_view(p, row, orders=order_list), True


def _parse_orders(p: Platform, req: NewTrade) -> list:
    """The request's orders as checked values (INVALID_ORDERS, SPLIT_RATIO_EXCEEDED), or []."""
    if req.orders is None:
        return []

    orders = [Order(out_order_no=o["out_order_no"], sub_merchant_id=o["sub_merchant_id"], amount=o["amount"],
                    subsidy_amount=o.get("subsidy_amount") or 0,
                    splits=tuple(Split(s["receiver_id"], s["amount"]) for s in o.get("splits") or ()))
              for o in req.orders]
    validate_orders(req.amount, orders, p.settings.split_ratio_max_pct)
    return orders


def _check_member(p: Platform, merchant_id: str, member_id: str, currency: str) -> None:
    """A trade may name only a member of the same merchant (and of the trade's currency)."""
    with p.db.read() as conn:
        row = conn.execute(select(members.c.currency).where(
            members.c.member_id == member_id, members.c.merchant_id == merchant_id)).first()
    if row is None:
        raise MemberNotFound("no such member")
    if row.currency != currency:
        raise InvalidRequest(f"the member's accounts are in {row.currency}, the trade is in {currency}")


def _replay(p: Platform, existing, fingerprint: str) -> dict:
    if existing["request_hash"] != fingerprint:
        raise IdempotencyConflict(
            f"out_trade_no {existing['out_trade_no']} was already used with a different request")
    with p.db.read() as conn:
        # The same trade as GET shows it: a paid trade's replay lists how it was paid.
        return trade_view(p, existing, load_components(conn, existing["trade_no"]),
                          load_orders(conn, p, existing["trade_no"]))


