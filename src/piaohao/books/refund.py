"""Refund: the merchant gives a buyer money back, through the channel and/or the member's own accounts.

    created (channel part)   hold:  merchant money  ->  channel_clearing + member_<method> accounts
                             key ("refund", refund_no, "reserve"); the channel paid: post; it failed: void
    created (own methods)    entry: the same legs, final at once        key ("refund", refund_no, "succeed")
    paid after we failed it  entry: the same legs, if the trade can take it back
                             key ("refund", refund_no, "late_succeed"); else `stray.carried_in_suspense`

"Merchant money" is, for a trade without orders, the merchant's pending settlement, else its
settled money; for a trade with orders (settlement), the order's seller: before settlement its
pending settlement, after settlement its settled money and each split receiver's share in
proportion (largest remainder), the merchant's own sale falling back to its other account.
Raises InsufficientBalance when no source covers the refund (nothing written).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, func, insert, select

from piaohao.books import chart
from piaohao.db.schema_clearing import order_refunds, order_splits, trade_orders
from piaohao.db.schema_refunds import refunds
from piaohao.domain.orders import OWN_ORDER_NO, PENDING, SETTLED
from piaohao.domain.refunds import Draw
from piaohao.domain.splits import refund_shares
from piaohao.kernel.errors import (
    InsufficientBalance,
    InsufficientFunds,
    InvalidRequest,
    OrderNotFound,
    RefundAmountExceeded,
)
from piaohao.kernel.invariants import require
from piaohao.ledger import write as ledger

__all__ = ["MEMBER_ACCOUNTS", "NOT_ROUTED", "legs_builder", "paid_by_channel", "refunded_by_order",
           "refused_by_channel", "take_from_merchant"]

MEMBER_ACCOUNTS = {"balance": chart.member_balance, "coins": chart.member_coins, "credit": chart.member_credit}
# Where the merchant's side of a refund is taken from, in this order: the money of the trade waits
# in pending settlement until it is settled; after settlement it is taken from the settled money.
MERCHANT_SOURCES = ("merchant_pending_settlement", "merchant_settled")
_o = trade_orders.c


def paid_by_channel(conn: Connection, hold_id: str, *, refund_no: str, at: datetime) -> None:
    ledger.post_hold(conn, hold_id, description=f"refund {refund_no} paid by the channel", at=at)


def refused_by_channel(conn: Connection, hold_id: str, *, at: datetime) -> None:
    ledger.void_hold(conn, hold_id, at=at)


def legs_builder(conn: Connection, t, draws: list[Draw], paid: dict, channel: str | None):
    """The refund's legs, given the merchant account they are taken from: credit the channel's
    clearing account (the channel pays the buyer back) and each member's account."""
    currency = t["currency"]
    credits: list[tuple[str, int]] = []
    for d in draws:
        if d.kind == "channel":
            credits.append((chart.channel_clearing(conn, channel, currency).account_id, d.amount))
            continue
        member_id = paid[(d.attempt, d.method)]["member_id"] or t["member_id"]
        account_of = MEMBER_ACCOUNTS.get(d.method)
        require(account_of is not None and member_id, f"no member account for internal component {d.method}")
        credits.append((account_of(conn, member_id, currency).account_id, d.amount))
    total = sum(d.amount for d in draws)

    def build(merchant_account_id: str) -> list:
        return [ledger.debit(merchant_account_id, total)] + [ledger.credit(a, x) for a, x in credits]

    return build


def take_from_merchant(conn: Connection, t, key: tuple[str, str, str], build, *, hold: bool,
                       at: datetime, out_order_no: str | None = None) -> str | None:
    """Take the refund from the merchant: hold it (`hold`, returns the hold id) or post it. Tries
    the merchant's pending settlement first, then its settled money; neither enough raises.
    A trade with orders (or a settled own sale) is routed by settlement: `piaohao.clearing`."""
    routed = refund_sources(conn, t, key, build, hold=hold, at=at, out_order_no=out_order_no)
    if routed is not NOT_ROUTED:
        return routed
    description = f"refund of trade {t['trade_no']}"
    for name in MERCHANT_SOURCES:
        account = chart.standard_account(conn, name, t["merchant_id"], t["currency"], at=at)
        try:
            if hold:
                return ledger.reserve(conn, key, build(account.account_id), description=description, at=at).hold_id
            ledger.post_entry(conn, key, build(account.account_id), description=description, at=at)
            return None
        except InsufficientFunds:
            continue  # nothing was written: try the next source
    raise InsufficientBalance("the merchant's pending and settled money cannot cover this refund")


def refunded_by_order(conn: Connection, trade_no: str, *, exclude: str | None = None) -> dict[str, int]:
    """What non-failed refunds took from each order of the trade."""
    q = (select(order_refunds.c.out_order_no, func.sum(order_refunds.c.amount))
         .join(refunds, refunds.c.refund_no == order_refunds.c.refund_no)
         .where(order_refunds.c.trade_no == trade_no, refunds.c.status != "failed"))
    if exclude is not None:
        q = q.where(order_refunds.c.refund_no != exclude)
    return {k: int(v) for k, v in conn.execute(q.group_by(order_refunds.c.out_order_no)).all()}


# --- trades with orders --------------------------------------------------------------------------------------

NOT_ROUTED = object()


def refund_sources(conn: Connection, t, key: tuple[str, str, str], build, *, hold: bool, at: datetime,
                   out_order_no: str | None = None):
    """Route a refund's merchant side (the hook in `take_from_merchant`).

    Returns NOT_ROUTED for a trade that has no order rows (paid before settlement existed): the
    caller keeps its own behaviour. Otherwise takes the refund in this transaction (a hold when
    `hold`, returning its id, else a posted entry) from the accounts a plain reading of the trade
    names, and records which order it came from. Raises InsufficientBalance (nothing written) when
    those accounts cannot cover it.
    """
    trade_no, refund_no = t["trade_no"], key[1]
    rows = {r["out_order_no"]: r for r in conn.execute(select(trade_orders).where(
        _o.trade_no == trade_no, _o.status.in_((PENDING, SETTLED))).with_for_update()).mappings()}
    if not rows:
        return NOT_ROUTED
    legs0 = build("-")
    total, credits = legs0[0].amount, legs0[1:]
    noted = conn.execute(select(order_refunds).where(order_refunds.c.refund_no == refund_no)).mappings().first()
    if noted is not None:
        order = rows[noted["out_order_no"]]
    else:
        order = _pick_order(rows, out_order_no)
    before = refunded_by_order(conn, trade_no, exclude=refund_no).get(order["out_order_no"], 0)
    if before + total > order["amount"]:
        raise RefundAmountExceeded(
            f"order {order['out_order_no']}: {order['amount'] - before} of {order['amount']} is left to refund")
    currency, kind = order["currency"], order["seller_type"]
    if order["status"] == PENDING:
        debits = [(chart.seller_pending(conn, kind, order["seller_id"], currency).account_id, total)]
        fallback = chart.seller_settled(conn, kind, order["seller_id"], currency).account_id
        phase = "before"
    else:
        split_rows = conn.execute(select(order_splits).where(
            order_splits.c.trade_no == trade_no, order_splits.c.out_order_no == order["out_order_no"])
            .order_by(order_splits.c.receiver_id)).mappings().all()
        weights = [s["amount"] for s in split_rows]
        after = refund_shares(order["amount"], weights, before + total)
        prior = refund_shares(order["amount"], weights, before)
        diff = [a - b for a, b in zip(after, prior, strict=True)]
        by_account: dict[str, int] = defaultdict(int)
        by_account[chart.seller_settled(conn, kind, order["seller_id"], currency).account_id] += diff[0]
        for s, x in zip(split_rows, diff[1:], strict=True):
            receiver = chart.receiver_settled(conn, order["merchant_id"], s["receiver_id"], currency)
            by_account[receiver.account_id] += x
        debits = [(a, x) for a, x in by_account.items() if x]
        fallback = chart.seller_pending(conn, kind, order["seller_id"], currency).account_id
        phase = "after"
    if noted is None:
        conn.execute(insert(order_refunds).values(refund_no=refund_no, trade_no=trade_no,
                                                  out_order_no=order["out_order_no"], amount=total, phase=phase,
                                                  created_at=at))
    attempts = [debits]
    if kind == chart.MERCHANT:
        # The merchant's own sale: as before settlement existed, the other of its two accounts
        # may cover what the first cannot (its pending and settled money are both its own).
        attempts.append([(fallback, total)])
    description = f"refund of trade {trade_no} order {order['out_order_no']}"
    for debit_legs in attempts:
        legs = [ledger.debit(a, x) if x > 0 else ledger.credit(a, -x) for a, x in debit_legs] + list(credits)
        try:
            if hold:
                return ledger.reserve(conn, key, legs, description=description, at=at).hold_id
            ledger.post_entry(conn, key, legs, description=description, at=at)
            return None
        except InsufficientFunds:
            continue
    raise InsufficientBalance(f"the money of order {order['out_order_no']} cannot cover this refund")


def _pick_order(rows: dict, out_order_no: str | None):
    named = [r for r in rows.values() if r["kind"] == "order"]
    if not named:
        if out_order_no not in (None, OWN_ORDER_NO):
            raise OrderNotFound(f"trade has no order {out_order_no}")
        return rows[OWN_ORDER_NO]
    if out_order_no is None:
        if len(named) == 1:
            return named[0]
        raise InvalidRequest("this trade has several orders: name the refunded one with out_order_no")
    if out_order_no not in rows:
        raise OrderNotFound(f"trade has no order {out_order_no}")
    return rows[out_order_no]

