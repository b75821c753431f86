"""Trade orders (合併支付): stored with the trade, cleared when it is paid, released when it closes,
and the refund routing of an order (before settlement: the seller's pending settlement, splits
cancelled in proportion; after: the seller's and the receivers' settled money, same proportions).

Every function here runs in the caller's transaction (the trade's own), never calls out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, exists, insert, select, update
from sqlalchemy.sql.elements import ColumnElement

from piaohao.books import chart, clearing
from piaohao.books.refund import refunded_by_order
from piaohao.db.inserts import dialect_insert
from piaohao.db.schema import merchants
from piaohao.db.schema_clearing import (
    marketing_usage,
    order_splits,
    settlement_details,
    split_receivers,
    sub_merchants,
    trade_orders,
)
from piaohao.domain.orders import CLOSED, CREATED, OWN_ORDER_NO, PENDING, SETTLED  # noqa: F401
from piaohao.domain.splits import PLATFORM_RECEIVER, Order
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    MarketingCapExceeded,
    ReceiverNotFound,
    SubMerchantNotActive,
    SubMerchantNotFound,
)
from piaohao.kernel.invariants import require
from piaohao.platform import Platform

SETTLE_DAYS_MAX = 365
_o = trade_orders.c


def business_date(p: Platform, when: datetime) -> str:
    return when.astimezone(p.settings.tz).date().isoformat()


# --- creating -------------------------------------------------------------------------------------

def create_orders(conn: Connection, p: Platform, trade: dict, orders: list[Order], now: datetime) -> None:
    """In the transaction that inserts the trade: check sellers and receivers, count the subsidies
    against the daily cap, store the orders and their splits."""
    merchant_id, currency = trade["merchant_id"], trade["currency"]
    seller_ids = sorted({o.sub_merchant_id for o in orders})
    found = {r.sub_merchant_id: r.status for r in conn.execute(select(
        sub_merchants.c.sub_merchant_id, sub_merchants.c.status).where(
        sub_merchants.c.merchant_id == merchant_id, sub_merchants.c.sub_merchant_id.in_(seller_ids)))}
    for sid in seller_ids:
        if sid not in found:
            raise SubMerchantNotFound(f"no such sub-merchant {sid}")
        if found[sid] != "active":
            raise SubMerchantNotActive(f"sub-merchant {sid} is {found[sid]}")
    receiver_ids = sorted({s.receiver_id for o in orders for s in o.splits} - {PLATFORM_RECEIVER})
    if receiver_ids:
        known = set(conn.execute(select(split_receivers.c.receiver_id).where(
            split_receivers.c.merchant_id == merchant_id,
            split_receivers.c.receiver_id.in_(receiver_ids))).scalars())
        missing = [r for r in receiver_ids if r not in known]
        if missing:
            raise ReceiverNotFound(f"no such split receiver {missing[0]}")
    subsidy = sum(o.subsidy_amount for o in orders)
    day = business_date(p, now) if subsidy else None
    if subsidy:
        consume_marketing(conn, p, merchant_id, currency, day, subsidy)
    conn.execute(insert(trade_orders), [{
        "trade_no": trade["trade_no"], "out_order_no": o.out_order_no, "merchant_id": merchant_id, "kind": "order",
        "seller_type": chart.SUB_MERCHANT, "seller_id": o.sub_merchant_id, "currency": currency,
        "amount": o.amount, "subsidy_amount": o.subsidy_amount, "split_amount": o.split_amount,
        "subsidy_date": day if o.subsidy_amount else None, "position": i, "status": CREATED, "paid_at": None,
        "settle_due_at": None, "settled_at": None, "batch_no": None, "created_at": now, "updated_at": now}
        for i, o in enumerate(orders)])
    split_rows = [{"trade_no": trade["trade_no"], "out_order_no": o.out_order_no, "receiver_id": s.receiver_id,
                   "amount": s.amount} for o in orders for s in o.splits]
    if split_rows:
        conn.execute(insert(order_splits), split_rows)


def consume_marketing(conn: Connection, p: Platform, merchant_id: str, currency: str, day: str, amount: int) -> None:
    """Count `amount` of subsidies against the merchant's cap for `day`: one counter row changed by
    a conditional UPDATE, so two trades racing for the last of the cap cannot both get it."""
    conn.execute(dialect_insert(conn, marketing_usage).values(
        merchant_id=merchant_id, business_date=day, currency=currency, used=0).on_conflict_do_nothing(
        index_elements=["merchant_id", "business_date", "currency"]))
    m = marketing_usage.c
    q = update(marketing_usage).where(m.merchant_id == merchant_id, m.business_date == day, m.currency == currency)
    cap = p.settings.marketing_daily_cap
    if cap is not None:
        q = q.where(m.used + amount <= cap)
    if conn.execute(q.values(used=m.used + amount)).rowcount != 1:
        raise MarketingCapExceeded(f"subsidies of {amount} would exceed today's marketing cap of {cap}")


def on_trade_closed(conn: Connection, p: Platform, trade, now: datetime) -> None:
    """The trade closed unpaid: its orders close and their subsidies go back to the day's cap."""
    rows = conn.execute(select(trade_orders).where(_o.trade_no == trade["trade_no"], _o.status == CREATED)
                        ).mappings().all()
    if not rows:
        return
    conn.execute(update(trade_orders).where(_o.trade_no == trade["trade_no"], _o.status == CREATED).values(
        status=CLOSED, updated_at=now))
    by_day: dict[str, int] = defaultdict(int)
    for r in rows:
        if r["subsidy_amount"] and r["subsidy_date"]:
            by_day[r["subsidy_date"]] += r["subsidy_amount"]
    m = marketing_usage.c
    for day, amount in by_day.items():
        conn.execute(update(marketing_usage).where(
            m.merchant_id == trade["merchant_id"], m.business_date == day, m.currency == trade["currency"],
            m.used >= amount).values(used=m.used - amount))


# --- clearing a paid trade ------------------------------------------------------------------------

class PaidFacts(NamedTuple):
    """What `on_trade_paid` would read first, read with the trade's own locked row (`paid_facts_columns`)."""

    has_order_rows: bool  # any trade_orders row (an order, or the merchant's own sale)
    settle_after_days: int  # the merchant's


_HAS_ORDER_ROWS, _SETTLE_AFTER_DAYS = "clearing_has_order_rows", "clearing_settle_after_days"


def paid_facts_columns(trade_no: ColumnElement, merchant_id: ColumnElement) -> list[ColumnElement]:
    """Two columns for the SELECT that locks a trade about to be paid (correlated on its columns),
    so clearing a sale without orders costs one INSERT: whether the trade has order rows and its
    merchant's `settle_after_days`. Exact with the trade locked: orders are only ever written in
    the transaction that inserts their trade, and the own-sale row by `on_trade_paid`, with the
    trade locked, in the transaction that marks it paid."""
    return [exists().where(_o.trade_no == trade_no).label(_HAS_ORDER_ROWS),
            select(merchants.c.settle_after_days).where(merchants.c.merchant_id == merchant_id)
            .scalar_subquery().label(_SETTLE_AFTER_DAYS)]


def paid_facts(row) -> tuple[dict, PaidFacts]:
    """Split a row read with `paid_facts_columns` into the trade (as `select(trades)` reads it) and the facts."""
    trade = dict(row)
    return trade, PaidFacts(bool(trade.pop(_HAS_ORDER_ROWS)), trade.pop(_SETTLE_AFTER_DAYS))


def on_trade_paid(conn: Connection, p: Platform, trade, now: datetime, *,
                  facts: PaidFacts | None = None) -> list | None:
    """Right after the paid trade's money reached the merchant's pending settlement: each order's
    amount moves on to its seller's pending settlement (one balanced entry), and every order,
    or the merchant's own sale, gets its settlement due date.

    `facts`: read with the trade's lock (`paid_facts_columns`), they spare this function its reads.
    Returns the trade's orders as `order_views` shows them when that is known without a read (a
    sale without orders: none), else None."""
    trade_no = trade["trade_no"]
    if facts is not None and not facts.has_order_rows:
        _insert_own_sale(conn, trade, facts.settle_after_days, now)
        return []
    rows = conn.execute(select(trade_orders).where(_o.trade_no == trade_no).with_for_update()).mappings().all()
    if not rows:
        days = conn.execute(select(merchants.c.settle_after_days).where(
            merchants.c.merchant_id == trade["merchant_id"])).scalar_one()
        _insert_own_sale(conn, trade, days, now)
        return []
    _clear_orders(conn, trade, rows, now)
    return None


_INSERT_ORDER = trade_orders.insert()


def _insert_own_sale(conn: Connection, trade, settle_after_days: int, now: datetime) -> None:
    """A sale without orders: the merchant's own, one row, due for settlement after the merchant's days."""
    conn.execute(_INSERT_ORDER, dict(  # the row as parameters of a statement built once (docs/speed.md)
        trade_no=trade["trade_no"], out_order_no=OWN_ORDER_NO, merchant_id=trade["merchant_id"], kind="own",
        seller_type=chart.MERCHANT, seller_id=trade["merchant_id"], currency=trade["currency"],
        amount=trade["amount"], subsidy_amount=0, split_amount=0, subsidy_date=None, position=0, status=PENDING,
        paid_at=now, settle_due_at=now + timedelta(days=min(settle_after_days, SETTLE_DAYS_MAX)), settled_at=None,
        batch_no=None, created_at=now, updated_at=now))


def _clear_orders(conn: Connection, trade, rows, now: datetime) -> None:
    trade_no, currency = trade["trade_no"], trade["currency"]
    todo = [r for r in rows if r["status"] == CREATED]
    if not todo:
        return  # already cleared (a replay)
    days = dict(conn.execute(select(sub_merchants.c.sub_merchant_id, sub_merchants.c.settle_after_days).where(
        sub_merchants.c.sub_merchant_id.in_({r["seller_id"] for r in todo}))).all())
    per_seller: dict[str, int] = defaultdict(int)
    for r in todo:
        per_seller[r["seller_id"]] += r["amount"]
    clearing.orders_to_sellers(conn, trade_no=trade_no, merchant_id=trade["merchant_id"], currency=currency,
                               per_seller=dict(per_seller), at=now)
    for r in todo:
        due = now + timedelta(days=min(days.get(r["seller_id"], SETTLE_DAYS_MAX), SETTLE_DAYS_MAX))
        done = conn.execute(update(trade_orders).where(
            _o.trade_no == trade_no, _o.out_order_no == r["out_order_no"], _o.status == CREATED).values(
            status=PENDING, paid_at=now, settle_due_at=due, updated_at=now)).rowcount
        require(done == 1, "the order rows are locked")


# --- reading --------------------------------------------------------------------------------------

def order_views(conn: Connection, p: Platform, trade_no: str) -> list[dict]:
    rows = conn.execute(select(trade_orders).where(_o.trade_no == trade_no, _o.kind == "order")
                        .order_by(_o.position)).mappings().all()
    if not rows:
        return []
    splits: dict[str, list] = defaultdict(list)
    for s in conn.execute(select(order_splits).where(order_splits.c.trade_no == trade_no)
                          .order_by(order_splits.c.receiver_id)).mappings():
        splits[s["out_order_no"]].append({"receiver_id": s["receiver_id"], "amount": s["amount"]})
    refunded = refunded_by_order(conn, trade_no)
    details = {d["out_order_no"]: d for d in conn.execute(select(settlement_details).where(
        settlement_details.c.trade_no == trade_no)).mappings()}
    tz = p.settings.tz
    out = []
    for r in rows:
        d = details.get(r["out_order_no"])
        out.append({
            "out_order_no": r["out_order_no"], "sub_merchant_id": r["seller_id"], "amount": r["amount"],
            "subsidy_amount": r["subsidy_amount"], "splits": splits.get(r["out_order_no"], []),
            "refunded_amount": refunded.get(r["out_order_no"], 0), "status": r["status"],
            "settle_due_at": rfc3339(r["settle_due_at"], tz), "settled_at": rfc3339(r["settled_at"], tz),
            "settlement": None if d is None else {
                "batch_no": d["batch_no"], "seller_amount": d["seller_amount"], "split_amount": d["split_amount"],
                "fee_amount": d["fee_amount"], "refunded_amount": d["refunded_amount"]},
        })
    return out


