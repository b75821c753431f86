"""Trade use cases: create (idempotent), read (merchant-scoped), close (merchant or expiry)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

import orjson
import structlog
from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from piaohao import clearing
from piaohao.channels.spi import Outcome
from piaohao.db.schema import payments, trades
from piaohao.domain import payments as pay_states
from piaohao.domain import trades as trade_states
from piaohao.domain.trades import TRADE_STATES, payment_expiry
from piaohao.kernel.clock import to_utc
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InvalidRequest,
    MemberNotFound,
    TradeExpired,
    TradeNotClosable,
    TradeNotFound,
    ZeroAmount,
)
from piaohao.kernel.ids import new_id, new_token
from piaohao.kernel.invariants import require
from piaohao.kernel.money import is_valid_amount
from piaohao.platform import Platform
from piaohao.services import funding, notifications
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
        """What makes two create requests "the same body": every field, instants normalised to UTC."""
        fields = asdict(self)
        if fields["orders"] is None:
            del fields["orders"]  # trades without orders keep the fingerprint they always had
        for k in ("expires_at", "order_created_at"):
            if fields[k] is not None:
                fields[k] = to_utc(fields[k]).isoformat()
        return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def create_trade(p: Platform, merchant_id: str, app_id: str, req: NewTrade) -> tuple[dict, bool]:
    """Returns (trade view, created). The same request again returns the same trade, created=False."""
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
        existing = _find_by_out_trade_no(p, merchant_id, req.out_trade_no)
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
        inserted = conn.execute(_insert_trade(p).values(**row).on_conflict_do_nothing(
            index_elements=["merchant_id", "out_trade_no"]).returning(trades.c.trade_no)).first()
        if inserted is None or not orders:
            return inserted, []
        from piaohao.clearing.orders import create_orders

        create_orders(conn, p, row, orders, now)  # same transaction: a refusal leaves no trade behind
        return inserted, load_orders(conn, p, row["trade_no"])

    inserted, order_list = p.db.write(tx)
    if inserted is None:
        existing = _find_by_out_trade_no(p, merchant_id, req.out_trade_no)
        require(existing is not None, "a conflicting trade must exist")
        return _replay(p, existing, fingerprint), False
    log.info("trade.created", trade_no=row["trade_no"], merchant_id=merchant_id, amount=req.amount)
    return trade_view(p, row, orders=order_list), True


def _parse_orders(p: Platform, req: NewTrade) -> list:
    """The request's orders as checked values (INVALID_ORDERS, SPLIT_RATIO_EXCEEDED), or []."""
    if req.orders is None:
        return []
    from piaohao.domain.splits import Order, Split, validate_orders

    orders = [Order(out_order_no=o["out_order_no"], sub_merchant_id=o["sub_merchant_id"], amount=o["amount"],
                    subsidy_amount=o.get("subsidy_amount") or 0,
                    splits=tuple(Split(s["receiver_id"], s["amount"]) for s in o.get("splits") or ()))
              for o in req.orders]
    validate_orders(req.amount, orders, p.settings.split_ratio_max_pct)
    return orders


def _check_member(p: Platform, merchant_id: str, member_id: str, currency: str) -> None:
    """A trade may name only a member of the same merchant (and of the trade's currency)."""
    from piaohao.db.schema_members import members

    with p.db.read() as conn:
        row = conn.execute(select(members.c.currency).where(
            members.c.member_id == member_id, members.c.merchant_id == merchant_id)).first()
    if row is None:
        raise MemberNotFound("no such member")
    if row.currency != currency:
        raise InvalidRequest(f"the member's accounts are in {row.currency}, the trade is in {currency}")


def _insert_trade(p: Platform):
    return (sqlite_insert if p.db.is_sqlite else postgresql_insert)(trades)


def _replay(p: Platform, existing, fingerprint: str) -> dict:
    if existing["request_hash"] != fingerprint:
        raise IdempotencyConflict(
            f"out_trade_no {existing['out_trade_no']} was already used with a different request")
    with p.db.read() as conn:
        return trade_view(p, existing, orders=load_orders(conn, p, existing["trade_no"]))


def _find_by_out_trade_no(p: Platform, merchant_id: str, out_trade_no: str):
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


def close_trade(p: Platform, merchant_id: str, trade_no: str) -> dict:
    """Merchant close: only an unpaid trade. Any payment started at a channel is closed there
    first; if the channel says it was paid, the payment is recorded and the close refused."""
    with p.db.read() as conn:
        trade = conn.execute(select(trades).where(trades.c.trade_no == trade_no,
                                                  trades.c.merchant_id == merchant_id)).mappings().first()
    if trade is None:
        raise TradeNotFound("no such trade")
    outcome = close_pending_trade(p, trade_no, reason=trade_states.CLOSE_REASON_MERCHANT)
    if outcome == "closed":
        return get_trade(p, merchant_id, trade_no=trade_no)
    raise TradeNotClosable(_NOT_CLOSABLE_WHY.get(outcome, "the trade cannot be closed"))


_NOT_CLOSABLE_WHY = {
    "paid": "the trade is paid; use a refund",
    "in_progress": "a payment is in progress at the channel; try again shortly",
}


# Trades with another purpose than "sale" (top-ups, ...) write their own entries and events when
# closed unpaid: purpose -> handler(conn, platform, closed_trade, now).
CLOSED_HANDLERS: dict[str, Callable] = {}


def close_pending_trade(p: Platform, trade_no: str, *, reason: str) -> str:
    """Close a trade at its channels, then here. Returns "closed" (now or already), "paid"
    (the trade is or just became paid) or "in_progress" (a channel could not confirm; retry)."""
    from piaohao.services.payments import apply_channel_result  # a cycle only at call time

    with p.db.read() as conn:
        trade = conn.execute(select(trades.c.status).where(trades.c.trade_no == trade_no)).first()
        open_payments = conn.execute(select(payments.c.payment_no, payments.c.channel).where(
            payments.c.trade_no == trade_no, payments.c.status.in_(pay_states.OPEN_STATES))).all()
    if trade is None:
        raise TradeNotFound("no such trade")
    if trade.status == trade_states.CLOSED:
        return "closed"
    if trade.status != trade_states.PENDING:
        return "paid"
    confirmed: set[str] = set()
    for payment_no, channel_name in open_payments:
        result = p.channel(channel_name).close_payment(payment_no)
        if result.outcome == Outcome.SUCCEEDED:
            apply_channel_result(p, payment_no, result, source="close")
            return "paid"
        if result.outcome in (Outcome.CLOSED, Outcome.NOT_FOUND, Outcome.FAILED):
            confirmed.add(payment_no)
        else:
            log.info("trade.close_deferred", trade_no=trade_no, payment_no=payment_no, outcome=result.outcome,
                     error=result.error)
            return "in_progress"

    def tx(conn: Connection) -> str:
        row = lock_trade(conn, trade_no)
        if row["status"] == trade_states.CLOSED:
            return "closed"
        if row["status"] != trade_states.PENDING:
            return "paid"
        still_open = {r.payment_no for r in conn.execute(select(payments.c.payment_no).where(
            payments.c.trade_no == trade_no, payments.c.status.in_(pay_states.OPEN_STATES)))}
        if still_open - confirmed:
            return "in_progress"  # a payment started after we asked the channel: ask again
        now = p.clock.now()
        event = "expire" if reason == trade_states.CLOSE_REASON_EXPIRED else "close"
        new_status = TRADE_STATES.next(row["status"], event)
        done = conn.execute(update(trades).where(
            trades.c.trade_no == trade_no, trades.c.status == row["status"]).values(
            status=new_status, closed_at=now, close_reason=reason, updated_at=now)).rowcount
        require(done == 1, "trade row is locked; the conditional update cannot miss")
        funding.release_held(conn, trade_no, now)  # a combination's held parts go back to the member
        clearing.on_trade_closed(conn, p, row, now)  # its orders close; their subsidies go back to the cap
        if still_open:
            conn.execute(update(payments).where(payments.c.payment_no.in_(still_open),
                                                payments.c.status.in_(pay_states.PAYMENT_STATES.sources("close")))
                         .values(status=pay_states.CLOSED, finished_at=now, updated_at=now))
        closed = dict(row, status=new_status, closed_at=now, close_reason=reason, updated_at=now)
        handler = CLOSED_HANDLERS.get(row["purpose"])
        if handler is not None:
            handler(conn, p, closed, now)
            return "closed"
        notifications.enqueue(conn, now=now, merchant_id=row["merchant_id"], app_id=row["app_id"],
                              type="trade.closed", subject_id=trade_no,
                              data=trade_view(p, closed, load_components(conn, trade_no),
                                              load_orders(conn, p, trade_no)),
                              notify_url=row["notify_url"], tz=p.settings.tz)
        log.info("trade.closed", trade_no=trade_no, reason=reason)
        return "closed"

    return p.db.write(tx)


def create_internal_trade(conn: Connection, p: Platform, *, merchant_id: str, app_id: str, purpose: str,
                          out_trade_no: str, amount: int, currency: str, subject: str,
                          member_id: str | None = None, expires_at: datetime | None = None,
                          return_url: str | None = None) -> dict:
    """Insert an internal trade (a top-up, ...) in the caller's transaction and return its row.

    Internal trades reuse the cashier, payment records, active query and expiry. They are never
    visible through /v1/trades (`purpose` != "sale"), never notify `trade.*` events, and their
    `out_trade_no` carries a ":" that merchant keys cannot, so they never collide with sales. What
    happens when one is paid or closes is up to `payments.PAID_HANDLERS[purpose]` and
    `CLOSED_HANDLERS[purpose]`, which the caller must have registered.
    """
    if purpose == "sale" or ":" not in out_trade_no:
        raise ValueError("internal trades have a purpose other than 'sale' and an out_trade_no with ':'")
    if not is_valid_amount(amount) or amount == 0:
        raise InvalidRequest("amount must be an integer of minor units between 1 and 10^15")
    from datetime import timedelta

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
