"""Trade orders (合併支付): stored with the trade, cleared when it is paid, released when it closes,
and the refund routing of an order (before settlement: the seller's pending settlement, splits
cancelled in proportion; after: the seller's and the receivers' settled money, same proportions).

Every function here runs in the caller's transaction (the trade's own), never calls out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update

from piaohao import ledger
from piaohao.adapters.schema import merchants
from piaohao.adapters.schema_clearing import (
    marketing_usage,
    order_refunds,
    order_splits,
    settlement_details,
    split_receivers,
    sub_merchants,
    trade_orders,
)
from piaohao.adapters.schema_refunds import refunds
from piaohao.clearing import accounts
from piaohao.clearing.splits import PLATFORM_RECEIVER, Order, refund_shares
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    InsufficientBalance,
    InvalidRequest,
    MarketingCapExceeded,
    OrderNotFound,
    ReceiverNotFound,
    RefundAmountExceeded,
    SubMerchantNotActive,
    SubMerchantNotFound,
)
from piaohao.kernel.invariants import require
from piaohao.ledger import chart
from piaohao.ledger.accounts import dialect_insert
from piaohao.platform import Platform

CREATED, PENDING, SETTLED, CLOSED = "created", "pending_settlement", "settled", "closed"
OWN_ORDER_NO = ":own"  # the implicit order of a trade without orders (merchant keys cannot hold ":")
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
        "seller_type": accounts.SUB_MERCHANT, "seller_id": o.sub_merchant_id, "currency": currency,
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

def on_trade_paid(conn: Connection, p: Platform, trade, now: datetime) -> None:
    """Right after the paid trade's money reached the merchant's pending settlement: each order's
    amount moves on to its seller's pending settlement (one balanced entry), and every order,
    or the merchant's own sale, gets its settlement due date."""
    trade_no, currency = trade["trade_no"], trade["currency"]
    rows = conn.execute(select(trade_orders).where(_o.trade_no == trade_no).with_for_update()).mappings().all()
    if not rows:
        days = conn.execute(select(merchants.c.settle_after_days).where(
            merchants.c.merchant_id == trade["merchant_id"])).scalar_one()
        conn.execute(insert(trade_orders).values(
            trade_no=trade_no, out_order_no=OWN_ORDER_NO, merchant_id=trade["merchant_id"], kind="own",
            seller_type=accounts.MERCHANT, seller_id=trade["merchant_id"], currency=currency, amount=trade["amount"],
            subsidy_amount=0, split_amount=0, subsidy_date=None, position=0, status=PENDING, paid_at=now,
            settle_due_at=now + timedelta(days=min(days, SETTLE_DAYS_MAX)), settled_at=None, batch_no=None,
            created_at=now, updated_at=now))
        return
    todo = [r for r in rows if r["status"] == CREATED]
    if not todo:
        return  # already cleared (a replay)
    days = dict(conn.execute(select(sub_merchants.c.sub_merchant_id, sub_merchants.c.settle_after_days).where(
        sub_merchants.c.sub_merchant_id.in_({r["seller_id"] for r in todo}))).all())
    per_seller: dict[str, int] = defaultdict(int)
    for r in todo:
        per_seller[r["seller_id"]] += r["amount"]
    source = chart.merchant_pending_settlement(conn, trade["merchant_id"], currency)
    legs = [ledger.debit(source.account_id, sum(per_seller.values()))]
    for seller_id in sorted(per_seller):
        target = accounts.seller_pending(conn, accounts.SUB_MERCHANT, seller_id, currency)
        legs.append(ledger.credit(target.account_id, per_seller[seller_id]))
    ledger.post_entry(conn, ("trade", trade_no, "clear_orders"), legs,
                      description=f"trade {trade_no}: orders to their sellers' pending settlement", at=now)
    for r in todo:
        due = now + timedelta(days=min(days.get(r["seller_id"], SETTLE_DAYS_MAX), SETTLE_DAYS_MAX))
        done = conn.execute(update(trade_orders).where(
            _o.trade_no == trade_no, _o.out_order_no == r["out_order_no"], _o.status == CREATED).values(
            status=PENDING, paid_at=now, settle_due_at=due, updated_at=now)).rowcount
        require(done == 1, "the order rows are locked")


# --- reading --------------------------------------------------------------------------------------

def refunded_by_order(conn: Connection, trade_no: str, *, exclude: str | None = None) -> dict[str, int]:
    """What non-failed refunds took from each order of the trade."""
    q = (select(order_refunds.c.out_order_no, func.sum(order_refunds.c.amount))
         .join(refunds, refunds.c.refund_no == order_refunds.c.refund_no)
         .where(order_refunds.c.trade_no == trade_no, refunds.c.status != "failed"))
    if exclude is not None:
        q = q.where(order_refunds.c.refund_no != exclude)
    return {k: int(v) for k, v in conn.execute(q.group_by(order_refunds.c.out_order_no)).all()}


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


# --- refunds --------------------------------------------------------------------------------------

NOT_ROUTED = object()


def refund_sources(conn: Connection, t, key: tuple[str, str, str], build, *, hold: bool, at: datetime,
                   out_order_no: str | None = None):
    """Route a refund's merchant side (the hook in services.refunds.take_from_merchant).

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
        debits = [(accounts.seller_pending(conn, kind, order["seller_id"], currency).account_id, total)]
        fallback = accounts.seller_settled(conn, kind, order["seller_id"], currency).account_id
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
        by_account[accounts.seller_settled(conn, kind, order["seller_id"], currency).account_id] += diff[0]
        for s, x in zip(split_rows, diff[1:], strict=True):
            receiver = accounts.receiver_settled(conn, order["merchant_id"], s["receiver_id"], currency)
            by_account[receiver.account_id] += x
        debits = [(a, x) for a, x in by_account.items() if x]
        fallback = accounts.seller_pending(conn, kind, order["seller_id"], currency).account_id
        phase = "after"
    if noted is None:
        conn.execute(insert(order_refunds).values(refund_no=refund_no, trade_no=trade_no,
                                                  out_order_no=order["out_order_no"], amount=total, phase=phase,
                                                  created_at=at))
    attempts = [debits]
    if kind == accounts.MERCHANT:
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
        except ledger.InsufficientFunds:
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

