"""Settlement of orders (結算): one verified batch per seller and currency, in the caller's
transaction. For each batch, in this order:

1. compute every order's parts (splits less their share of refunds, the seller's rest plus the
   subsidy less the seller's fee), by the largest remainder, in minor units;
2. write the batch and one detail per order (the detail's primary key is the order: an order is
   settled exactly once, whatever races) and one row per receiver share;
3. verify before money moves: the batch equals the sum of its details (SQL SUM over what was
   written), the receiver rows equal the details' split totals, and the conditional UPDATE
   pending_settlement -> settled changed exactly the batch's orders;
4. post one balanced entry (pending -> settled, marketing expense -> seller, fee -> fee income,
   receivers' shares), then read the entry's legs back and check they equal the batch.
Any failed check raises SettlementVerificationFailed and the transaction rolls back: nothing of
the batch exists. The caller has locked the order rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, exists, func, insert, select, update

from piaohao.books import settle as settle_book
from piaohao.clearing import fees
from piaohao.clearing.orders import PENDING, SETTLED, business_date
from piaohao.db.schema import trade_components, trades
from piaohao.db.schema_clearing import (
    order_refunds,
    order_splits,
    settlement_batches,
    settlement_details,
    settlement_split_details,
    trade_orders,
)
from piaohao.db.schema_refunds import refunds
from piaohao.domain.splits import settle_order
from piaohao.kernel.errors import SettlementVerificationFailed
from piaohao.kernel.ids import new_id
from piaohao.kernel.invariants import require
from piaohao.platform import Platform
from piaohao.services import notifications

_o = trade_orders.c
IN_CHUNK = 900  # bound parameters per IN list (SQLite's limit is far above; keeps statements small)


def _chunks(items: list, n: int = IN_CHUNK):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class Facts:
    """What settling a set of orders needs besides the order rows, read set-based."""

    splits: dict = field(default_factory=dict)  # (trade_no, out_order_no) -> [(receiver_id, amount)]
    refunded: dict = field(default_factory=dict)  # (trade_no, out_order_no) -> non-failed refunds
    in_flight: set = field(default_factory=set)  # orders with a refund still processing
    method: dict = field(default_factory=dict)  # trade_no -> payment method (for fee rules)
    notify: dict = field(default_factory=dict)  # trade_no -> (app_id, notify_url)
    receiver_accounts: dict = field(default_factory=dict)  # (merchant_id, currency) -> {receiver_id: account}


def load_facts(conn: Connection, orders: list) -> Facts:
    f = Facts()
    trade_nos = sorted({o["trade_no"] for o in orders})
    for part in _chunks(trade_nos):
        for t, o, r, a in conn.execute(select(order_splits.c.trade_no, order_splits.c.out_order_no,
                                              order_splits.c.receiver_id, order_splits.c.amount)
                                       .where(order_splits.c.trade_no.in_(part))
                                       .order_by(order_splits.c.receiver_id)):
            f.splits.setdefault((t, o), []).append((r, a))
        for t, o, status, a in conn.execute(select(order_refunds.c.trade_no, order_refunds.c.out_order_no,
                                                   refunds.c.status, order_refunds.c.amount)
                                            .join(refunds, refunds.c.refund_no == order_refunds.c.refund_no)
                                            .where(order_refunds.c.trade_no.in_(part))):
            if status == "failed":
                continue
            f.refunded[(t, o)] = f.refunded.get((t, o), 0) + a
            if status != "succeeded":
                f.in_flight.add((t, o))
        for t, method, kind in conn.execute(select(trade_components.c.trade_no, trade_components.c.method,
                                                   trade_components.c.kind)
                                            .where(trade_components.c.trade_no.in_(part),
                                                   trade_components.c.status == "paid")):
            if kind == "channel" or t not in f.method:
                f.method[t] = method
        for t, app_id, url in conn.execute(select(trades.c.trade_no, trades.c.app_id, trades.c.notify_url)
                                           .where(trades.c.trade_no.in_(part))):
            f.notify[t] = (app_id, url)
    return f


@dataclass
class BatchResult:
    batch_no: str
    seller_id: str
    order_count: int
    seller_amount: int
    split_amount: int
    fee_amount: int


def settle_group(conn: Connection, p: Platform, orders: list, facts: Facts, rules: list, *, trigger: str,
                 now: datetime) -> BatchResult:
    """Settle `orders` (locked rows, all pending_settlement, one merchant, seller and currency)."""
    first = orders[0]
    merchant_id, seller_type, seller_id, currency = (first["merchant_id"], first["seller_type"], first["seller_id"],
                                                     first["currency"])
    require(all((o["merchant_id"], o["seller_type"], o["seller_id"], o["currency"]) ==
               (merchant_id, seller_type, seller_id, currency) and o["status"] == PENDING for o in orders),
            "a batch settles pending orders of one seller and currency only")
    batch_no = new_id("stb")
    details, split_rows = [], []
    to_receiver: dict[str, int] = defaultdict(int)
    totals = defaultdict(int)
    for o in orders:
        key = (o["trade_no"], o["out_order_no"])
        splits = facts.splits.get(key, [])
        rule = fees.match(rules, merchant_id=merchant_id, method=facts.method.get(o["trade_no"], "none"),
                          business_type=o["kind"], currency=currency)
        s = settle_order(o["amount"], [a for _, a in splits], facts.refunded.get(key, 0), o["subsidy_amount"],
                         lambda base, r=rule: (r.fee(base), r.bearer))
        details.append({"trade_no": o["trade_no"], "out_order_no": o["out_order_no"], "batch_no": batch_no,
                        "amount": o["amount"], "refunded_amount": o["amount"] - s.pending_out,
                        "subsidy_amount": s.subsidy, "split_amount": sum(s.split_parts), "fee_amount": s.fee,
                        "platform_fee_amount": s.platform_fee, "fee_rule_id": rule.rule_id,
                        "seller_amount": s.seller_amount, "created_at": now})
        for (rid, _), part in zip(splits, s.split_parts, strict=True):
            split_rows.append({"trade_no": o["trade_no"], "out_order_no": o["out_order_no"], "receiver_id": rid,
                               "batch_no": batch_no, "amount": part})
            to_receiver[rid] += part
        for k in ("amount", "refunded_amount", "subsidy_amount", "split_amount", "fee_amount",
                  "platform_fee_amount", "seller_amount"):
            totals[k] += details[-1][k]
    pending_out = totals["amount"] - totals["refunded_amount"]
    conn.execute(insert(settlement_batches).values(
        batch_no=batch_no, merchant_id=merchant_id, seller_type=seller_type, seller_id=seller_id, currency=currency,
        business_date=business_date(p, now), trigger=trigger, order_count=len(details),
        gross_amount=totals["amount"], refunded_amount=totals["refunded_amount"],
        subsidy_amount=totals["subsidy_amount"], split_amount=totals["split_amount"], fee_amount=totals["fee_amount"],
        platform_fee_amount=totals["platform_fee_amount"], seller_amount=totals["seller_amount"], status=SETTLED,
        created_at=now))
    conn.execute(insert(settlement_details), details)
    if split_rows:
        conn.execute(insert(settlement_split_details), split_rows)
    _verify_batch(conn, batch_no, len(details), totals)
    d = settlement_details.c
    changed = conn.execute(update(trade_orders).where(
        _o.status == PENDING,
        exists().where(and_(d.batch_no == batch_no, d.trade_no == _o.trade_no, d.out_order_no == _o.out_order_no))
    ).values(status=SETTLED, settled_at=now, batch_no=batch_no, updated_at=now)).rowcount
    if changed != len(details):
        raise SettlementVerificationFailed(f"batch {batch_no}: {changed} orders changed state, expected {len(details)}")
    receiver_ids = facts.receiver_accounts.get((merchant_id, currency)) or settle_book.receiver_accounts(
        conn, merchant_id, set(to_receiver), currency, at=now)
    expected = settle_book.post_batch(
        conn, batch_no=batch_no, seller_type=seller_type, seller_id=seller_id, currency=currency,
        pending_out=pending_out, subsidy=totals["subsidy_amount"], seller_amount=totals["seller_amount"],
        fee=totals["fee_amount"], to_receiver={receiver_ids[rid]: x for rid, x in to_receiver.items()}, at=now)
    settle_book.verify_batch_entry(conn, batch_no, expected)
    _tell_merchant(conn, p, batch_no, orders, facts, totals, now)
    return BatchResult(batch_no, seller_id, len(details), totals["seller_amount"], totals["split_amount"],
                       totals["fee_amount"])


def _verify_batch(conn: Connection, batch_no: str, count: int, totals: dict) -> None:
    d = settlement_details.c
    row = conn.execute(select(func.count(), func.coalesce(func.sum(d.amount), 0),
                              func.coalesce(func.sum(d.refunded_amount), 0),
                              func.coalesce(func.sum(d.subsidy_amount), 0),
                              func.coalesce(func.sum(d.split_amount), 0), func.coalesce(func.sum(d.fee_amount), 0),
                              func.coalesce(func.sum(d.seller_amount), 0)).where(d.batch_no == batch_no)).one()
    want = (count, totals["amount"], totals["refunded_amount"], totals["subsidy_amount"], totals["split_amount"],
            totals["fee_amount"], totals["seller_amount"])
    if tuple(int(x) for x in row) != want:
        raise SettlementVerificationFailed(f"batch {batch_no}: details sum to {tuple(row)}, the batch says {want}")
    splits = conn.execute(select(func.coalesce(func.sum(settlement_split_details.c.amount), 0)).where(
        settlement_split_details.c.batch_no == batch_no)).scalar_one()
    if int(splits) != totals["split_amount"]:
        raise SettlementVerificationFailed(f"batch {batch_no}: receiver rows sum to {splits}, "
                                           f"details to {totals['split_amount']}")
    if totals["amount"] - totals["refunded_amount"] + totals["subsidy_amount"] != (
            totals["seller_amount"] + totals["split_amount"] + totals["fee_amount"]):
        raise SettlementVerificationFailed(f"batch {batch_no}: what moves in is not what moves out")


def _tell_merchant(conn: Connection, p: Platform, batch_no: str, orders: list, facts: Facts, totals: dict,
                   now: datetime) -> None:
    """One `settlement.settled` event per batch, to the notify_url of the batch's latest trade."""
    latest = max(orders, key=lambda o: (o["paid_at"] or now, o["trade_no"]))
    app_id, url = facts.notify.get(latest["trade_no"], (None, None))
    if app_id is None:
        return
    first = orders[0]
    notifications.enqueue(conn, now=now, merchant_id=first["merchant_id"], app_id=app_id, type="settlement.settled",
                          subject_id=batch_no, notify_url=url, tz=p.settings.tz, data={
                              "batch_no": batch_no, "seller_type": first["seller_type"],
                              "seller_id": first["seller_id"], "currency": first["currency"],
                              "order_count": len(orders), "seller_amount": totals["seller_amount"],
                              "split_amount": totals["split_amount"], "fee_amount": totals["fee_amount"],
                              "orders": [{"trade_no": o["trade_no"], "out_order_no": o["out_order_no"]}
                                         for o in orders[:1000]]})


def settle_orders(conn: Connection, p: Platform, orders: list, *, trigger: str, now: datetime,
                  skip_in_flight: bool = True) -> tuple[list[BatchResult], list]:
    """Settle locked pending orders, grouped by seller and currency. Returns (batches, skipped):
    orders with a refund still at the channel are skipped (they settle once it is final)."""
    if not orders:
        return [], []
    facts = load_facts(conn, orders)
    rules = fees.load_rules(conn)
    ready = [o for o in orders if (o["trade_no"], o["out_order_no"]) not in facts.in_flight]
    skipped = [o for o in orders if (o["trade_no"], o["out_order_no"]) in facts.in_flight]
    groups: dict[tuple, list] = defaultdict(list)
    for o in ready:
        groups[(o["merchant_id"], o["seller_type"], o["seller_id"], o["currency"])].append(o)
    by_currency: dict[tuple, set] = defaultdict(set)
    for o in ready:
        by_currency[(o["merchant_id"], o["currency"])].update(
            r for r, _ in facts.splits.get((o["trade_no"], o["out_order_no"]), ()))
    for (merchant_id, currency), ids in by_currency.items():
        facts.receiver_accounts[(merchant_id, currency)] = settle_book.receiver_accounts(conn, merchant_id, ids,
                                                                                         currency, at=now)
    results = [settle_group(conn, p, group, facts, rules, trigger=trigger, now=now)
               for _, group in sorted(groups.items())]
    return results, skipped
