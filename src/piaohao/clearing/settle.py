"""Settlement of orders (結算): one verified batch per seller and currency, in the caller's
transaction, for a whole set of orders at once (a chunk of a run, or a confirmed trade):

0. before that transaction, the caller opens the ledger accounts the set will credit or debit in
   a short transaction of their own (`open_accounts_ahead`), never in the crediting one;
1. plan (pure Python, one pass over the orders, bounded by the chunk): match each order's fee
   rule (memoised per merchant, method, business type and currency) and compute its parts
   (splits less their share of refunds, the seller's rest plus the subsidy less the seller's fee)
   by `domain.splits.settle_order` (largest remainder, minor units); group them into batches;
2. write every batch, detail (the detail's primary key is the order: an order is settled exactly
   once, whatever races) and receiver share of the set in bulk (COPY on PostgreSQL);
3. verify before money moves, set-based over all the set's batches: each batch equals the sum of
   its details (one SQL GROUP BY over what was written), its receiver rows equal its details'
   splits, in = out, and one conditional UPDATE pending_settlement -> settled (joined to the
   details) changed exactly each batch's orders (counted per batch from its RETURNING);
4. post one balanced entry per batch (books.settle.post_batches: pending -> settled, marketing
   expense -> seller, fee -> fee income, receivers' shares; the accounts taken from step 0, any
   it missed resolved here), read all the entries back in one
   query and check each equals its batch.
Any failed check raises SettlementVerificationFailed and the transaction rolls back: nothing of
the set exists. The caller has locked the order rows. Statements per order: none; per set: a
fixed number on PostgreSQL (keys as one array parameter), plus one per 900 keys on SQLite.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Select, func, select, update

from piaohao.books import settle as settle_book
from piaohao.clearing import fees
from piaohao.clearing.orders import PENDING, SETTLED, business_date
from piaohao.db.bulk import insert_rows, pg_array
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
IN_CHUNK = 900  # SQLite: bound parameters per IN list (its limit is far above; keeps statements small)


def _chunks(conn: Connection, items: list):
    """Pieces of `items` for `_among`: all at once on PostgreSQL (one array parameter), IN_CHUNK on SQLite."""
    n = max(len(items), 1) if conn.dialect.name == "postgresql" else IN_CHUNK
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _among(conn: Connection, column, values: list):
    """`column` is one of `values`. PostgreSQL: `= ANY(one array parameter)`: one fixed SQL text that
    psycopg prepares once and the planner turns into index lookups, where an IN list of thousands
    of parameters is parsed, converted and planned anew each time (the profile's 4 s of 50)."""
    if conn.dialect.name == "postgresql":
        return pg_array(column, values)
    return column.in_(values)


@dataclass
class Facts:
    """What settling a set of orders needs besides the order rows, read set-based."""

    splits: dict = field(default_factory=dict)  # (trade_no, out_order_no) -> [(receiver_id, amount)]
    refunded: dict = field(default_factory=dict)  # (trade_no, out_order_no) -> non-failed refunds
    in_flight: set = field(default_factory=set)  # orders with a refund still processing
    method: dict = field(default_factory=dict)  # trade_no -> payment method (for fee rules)
    notify: dict = field(default_factory=dict)  # trade_no -> (app_id, notify_url)


def load_facts(conn: Connection, orders: list) -> Facts:
    f = Facts()
    trade_nos = sorted({o["trade_no"] for o in orders})
    for part in _chunks(conn, trade_nos):
        for t, o, r, a in conn.execute(select(order_splits.c.trade_no, order_splits.c.out_order_no,
                                              order_splits.c.receiver_id, order_splits.c.amount)
                                       .where(_among(conn, order_splits.c.trade_no, part))
                                       .order_by(order_splits.c.receiver_id)):
            f.splits.setdefault((t, o), []).append((r, a))
        for t, o, status, a in conn.execute(select(order_refunds.c.trade_no, order_refunds.c.out_order_no,
                                                   refunds.c.status, order_refunds.c.amount)
                                            .join(refunds, refunds.c.refund_no == order_refunds.c.refund_no)
                                            .where(_among(conn, order_refunds.c.trade_no, part))):
            if status == "failed":
                continue
            f.refunded[(t, o)] = f.refunded.get((t, o), 0) + a
            if status != "succeeded":
                f.in_flight.add((t, o))
        for t, method, kind in conn.execute(select(trade_components.c.trade_no, trade_components.c.method,
                                                   trade_components.c.kind)
                                            .where(_among(conn, trade_components.c.trade_no, part),
                                                   trade_components.c.status == "paid")):
            if kind == "channel" or t not in f.method:
                f.method[t] = method
        for t, app_id, url in conn.execute(select(trades.c.trade_no, trades.c.app_id, trades.c.notify_url)
                                           .where(_among(conn, trades.c.trade_no, part))):
            f.notify[t] = (app_id, url)
    return f



TOTALS = ("amount", "refunded_amount", "subsidy_amount", "split_amount", "fee_amount", "platform_fee_amount",
          "seller_amount")


@dataclass
class Batch:
    """One planned batch: its money (what the ledger entry moves), totals, details and receiver rows."""

    money: settle_book.BatchMoney
    orders: list = field(default_factory=list)
    details: list = field(default_factory=list)
    split_rows: list = field(default_factory=list)
    totals: dict = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))


@dataclass
class BatchResult:
    batch_no: str
    seller_id: str
    order_count: int
    seller_amount: int
    split_amount: int
    fee_amount: int


def plan_batches(orders: list, facts: Facts, rules: list, *, now: datetime) -> list[Batch]:
    """Group pending orders by (merchant, seller, currency) and compute every detail (pure)."""
    by_group: dict[tuple, Batch] = {}
    rule_of: dict[tuple, fees.FeeRule] = {}
    for o in sorted(orders, key=lambda o: (o["merchant_id"], o["seller_type"], o["seller_id"], o["currency"])):
        group = (o["merchant_id"], o["seller_type"], o["seller_id"], o["currency"])
        require(o["status"] == PENDING, "a batch settles pending orders only")
        b = by_group.get(group)
        if b is None:
            b = by_group[group] = Batch(settle_book.BatchMoney(new_id("stb"), *group))
        rule_key = (o["merchant_id"], facts.method.get(o["trade_no"], "none"), o["kind"], o["currency"])
        rule = rule_of.get(rule_key)
        if rule is None:
            rule = rule_of[rule_key] = fees.match(rules, merchant_id=rule_key[0], method=rule_key[1],
                                                  business_type=rule_key[2], currency=rule_key[3])
        key = (o["trade_no"], o["out_order_no"])
        splits = facts.splits.get(key, ())
        s = settle_order(o["amount"], [a for _, a in splits], facts.refunded.get(key, 0), o["subsidy_amount"],
                         lambda base, r=rule: (r.fee(base), r.bearer))
        split_amount = sum(s.split_parts)
        detail = {"trade_no": key[0], "out_order_no": key[1], "batch_no": b.money.batch_no, "amount": o["amount"],
                  "refunded_amount": o["amount"] - s.pending_out, "subsidy_amount": s.subsidy,
                  "split_amount": split_amount, "fee_amount": s.fee, "platform_fee_amount": s.platform_fee,
                  "fee_rule_id": rule.rule_id, "seller_amount": s.seller_amount, "created_at": now}
        b.orders.append(o)
        b.details.append(detail)
        for k in TOTALS:
            b.totals[k] += detail[k]
        for (receiver_id, _), part in zip(splits, s.split_parts, strict=True):
            b.split_rows.append({"trade_no": key[0], "out_order_no": key[1], "receiver_id": receiver_id,
                                 "batch_no": b.money.batch_no, "amount": part})
            b.money.to_receiver[receiver_id] += part
    for b in by_group.values():
        t, m = b.totals, b.money
        m.pending_out, m.subsidy = t["amount"] - t["refunded_amount"], t["subsidy_amount"]
        m.seller_amount, m.fee = t["seller_amount"], t["fee_amount"]
        if m.pending_out + m.subsidy != m.seller_amount + t["split_amount"] + m.fee:
            raise SettlementVerificationFailed(f"batch {m.batch_no}: what moves in is not what moves out")
    return list(by_group.values())


def write_batches(conn: Connection, p: Platform, planned: list[Batch], *, trigger: str, now: datetime) -> None:
    day = business_date(p, now)
    insert_rows(conn, settlement_batches, [{
        "batch_no": b.money.batch_no, "merchant_id": b.money.merchant_id, "seller_type": b.money.seller_type,
        "seller_id": b.money.seller_id, "currency": b.money.currency, "business_date": day, "trigger": trigger,
        "order_count": len(b.details), "gross_amount": b.totals["amount"],
        "refunded_amount": b.totals["refunded_amount"], "subsidy_amount": b.totals["subsidy_amount"],
        "split_amount": b.totals["split_amount"], "fee_amount": b.totals["fee_amount"],
        "platform_fee_amount": b.totals["platform_fee_amount"], "seller_amount": b.totals["seller_amount"],
        "status": SETTLED, "created_at": now} for b in planned])
    insert_rows(conn, settlement_details, [d for b in planned for d in b.details])
    insert_rows(conn, settlement_split_details, [r for b in planned for r in b.split_rows])


def verify_written(conn: Connection, planned: list[Batch], *, now: datetime) -> None:
    """Set-based checks of everything written, then the state change of exactly the batches' orders."""
    want = {b.money.batch_no: b for b in planned}
    d, sd = settlement_details.c, settlement_split_details.c
    seen: set[str] = set()
    splits: dict[str, int] = {}
    for part in _chunks(conn, sorted(want)):
        for batch_no, count, *sums in conn.execute(
                select(d.batch_no, func.count(), *(func.sum(getattr(d, k)) for k in TOTALS))
                .where(_among(conn, d.batch_no, part)).group_by(d.batch_no)):
            b = want[batch_no]
            got = (int(count), *(int(x) for x in sums))
            expected = (len(b.details), *(b.totals[k] for k in TOTALS))
            if got != expected:
                raise SettlementVerificationFailed(f"batch {batch_no}: details sum to {got}, the batch says {expected}")
            seen.add(batch_no)
        splits.update({batch_no: int(x) for batch_no, x in conn.execute(
            select(sd.batch_no, func.sum(sd.amount)).where(_among(conn, sd.batch_no, part)).group_by(sd.batch_no))})
    if seen != want.keys():
        raise SettlementVerificationFailed(f"batches without details: {sorted(want.keys() - seen)[:5]}")
    for batch_no, b in want.items():
        if splits.get(batch_no, 0) != b.totals["split_amount"]:
            raise SettlementVerificationFailed(f"batch {batch_no}: receiver rows sum to {splits.get(batch_no, 0)}, "
                                               f"details to {b.totals['split_amount']}")
    changed: dict[str, int] = defaultdict(int)
    for part in _chunks(conn, sorted(want)):
        for (batch_no,) in conn.execute(
                update(trade_orders)
                .where(_o.status == PENDING, d.trade_no == _o.trade_no, d.out_order_no == _o.out_order_no,
                       _among(conn, d.batch_no, part))
                .values(status=SETTLED, settled_at=now, batch_no=d.batch_no, updated_at=now)
                .returning(_o.batch_no)):
            changed[batch_no] += 1
    for batch_no, b in want.items():
        if changed.get(batch_no, 0) != len(b.details):
            raise SettlementVerificationFailed(f"batch {batch_no}: {changed.get(batch_no, 0)} orders changed "
                                               f"state, expected {len(b.details)}")


def _settled_events(p: Platform, planned: list[Batch], facts: Facts, now: datetime) -> list[dict]:
    """One `settlement.settled` event per batch, to the notify_url of the batch's latest trade."""
    events = []
    for b in planned:
        latest = max(b.orders, key=lambda o: (o["paid_at"] or now, o["trade_no"]))
        app_id, url = facts.notify.get(latest["trade_no"], (None, None))
        if app_id is None:
            continue
        m = b.money
        events.append({"merchant_id": m.merchant_id, "app_id": app_id, "type": "settlement.settled",
                       "subject_id": m.batch_no, "notify_url": url, "data": {
                           "batch_no": m.batch_no, "seller_type": m.seller_type, "seller_id": m.seller_id,
                           "currency": m.currency, "order_count": len(b.orders),
                           "seller_amount": b.totals["seller_amount"], "split_amount": b.totals["split_amount"],
                           "fee_amount": b.totals["fee_amount"],
                           "orders": [{"trade_no": o["trade_no"], "out_order_no": o["out_order_no"]}
                                      for o in b.orders[:1000]]}})
    return events


def open_accounts_ahead(p: Platform, orders: Select, *, at: datetime) -> settle_book.SettlementAccounts:
    """Get or create, each in bulk, every ledger account that settling `orders` (a SELECT of
    `trade_orders` rows, unlocked) will move money through: the sellers' pending and settled
    accounts, the split receivers' settled accounts, the platform's fee income (and marketing
    expense when an order carries a subsidy). One read, then one short write transaction of its
    own (none when there is nothing to settle), before the transaction that credits them: see
    `books.settle.SettlementAccounts` for why. The orders are read without a lock, so the set
    that is then locked and settled may differ (another worker took some, another order became
    due): `settle_orders` resolves whatever was not opened here in its own transaction."""
    page = orders.subquery()
    s = order_splits.c
    q = (select(page.c.merchant_id, page.c.seller_type, page.c.seller_id, page.c.currency,
                (page.c.subsidy_amount > 0).label("subsidised"), s.receiver_id)
         .select_from(page.outerjoin(order_splits, (s.trade_no == page.c.trade_no)
                                     & (s.out_order_no == page.c.out_order_no)))
         .distinct())
    needs = settle_book.AccountNeeds()
    with p.db.read() as conn:
        for merchant_id, seller_type, seller_id, currency, subsidised, receiver_id in conn.execute(q):
            needs.sellers.add((seller_type, seller_id, currency))
            needs.platform.add((settle_book.FEE_INCOME, currency))
            if subsidised:
                needs.platform.add((settle_book.MARKETING, currency))
            if receiver_id is not None:
                needs.receivers.add((merchant_id, currency, receiver_id))
    if not needs:
        return settle_book.SettlementAccounts()
    return p.db.write(lambda conn: settle_book.open_accounts(conn, needs, at=at))


def settle_orders(conn: Connection, p: Platform, orders: list, *, trigger: str, now: datetime,
                  skip_in_flight: bool = True, accounts: settle_book.SettlementAccounts | None = None,
                  ) -> tuple[list[BatchResult], list]:
    """Settle locked pending orders, grouped by seller and currency. Returns (batches, skipped):
    orders with a refund still at the channel are skipped (they settle once it is final).

    `accounts`: the ledger accounts opened ahead by `open_accounts_ahead`, in a transaction of
    their own; those missing from it are created here."""
    if not orders:
        return [], []
    facts = load_facts(conn, orders)
    rules = fees.load_rules(conn)
    ready = [o for o in orders if (o["trade_no"], o["out_order_no"]) not in facts.in_flight]
    skipped = [o for o in orders if (o["trade_no"], o["out_order_no"]) in facts.in_flight]
    planned = plan_batches(ready, facts, rules, now=now)
    if not planned:
        return [], skipped
    write_batches(conn, p, planned, trigger=trigger, now=now)
    verify_written(conn, planned, now=now)
    wants = settle_book.post_batches(conn, [b.money for b in planned], at=now, accounts=accounts)
    settle_book.verify_batch_entries(conn, wants)
    notifications.enqueue_many(conn, _settled_events(p, planned, facts, now), now=now, tz=p.settings.tz)
    return [BatchResult(b.money.batch_no, b.money.seller_id, len(b.details), b.totals["seller_amount"],
                        b.totals["split_amount"], b.totals["fee_amount"]) for b in planned], skipped
