"""Settlement of orders (結算): one verified batch per seller and currency, in the caller's
transaction, for a whole set of orders at once (a page of a run, or a confirmed trade), computed
by the database over the set, never order by order in Python:

0. before that transaction, the caller opens the ledger accounts the set will credit or debit in
   a short transaction of their own (`open_accounts_ahead`), never in the crediting one;
1. orders with a refund still at the channel are set aside (they settle once it is final); each
   seller group (merchant, seller, currency) of the rest gets a batch number and a batch row;
   every statement below takes the set as one parameter of keys (order and its batch number);
2. the receivers' parts (`settlement_split_details`), in one INSERT … SELECT: each split less its
   share of what was refunded, the shares by the largest remainder (window functions over each
   order's weights: the seller's own share first, then the splits by receiver; exact integer
   arithmetic, `db.exact`), the same units as `kernel.money.allocate`;
3. the details (`settlement_details`), in one INSERT … SELECT: the fee rule matched per distinct
   (merchant, method, business type, currency) by priority, then specificity, then rule id (a
   record no rule matches raises NoFeeRule), the fee computed by the rule's exact rounding and
   clamps (`clearing.fees.FeeRule.fee` is the same rule in Python), the seller's part;
4. the batch rows' totals, one UPDATE … FROM (a GROUP BY of the details);
5. checks before money moves: every detail conserves its money and sits in its own seller's
   batch, every split has its part and none is above its split, every batch holds the orders its
   group had, moves
   in what it moves out and pays its receivers its details' splits; then one conditional UPDATE
   pending_settlement -> settled changed exactly each batch's orders (counted per batch from its
   RETURNING);
6. one balanced ledger entry per batch (books.settle.post_batches), read back and compared.
Any failed check raises SettlementVerificationFailed and the transaction rolls back: nothing of
the set exists. The caller has locked the order rows. Statements: a fixed number per set on both
databases (the keys travel as one JSON parameter, the set's trades and batches as one array
parameter on PostgreSQL, one JSON text on SQLite); Python holds only the set's keys and one row
per batch. An order's payment method (for its fee rule) is its trade's paid channel part, else
its first paid internal part by attempt and method.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ARRAY, Connection, Select, String, bindparam, select, text

from piaohao.books import settle as settle_book
from piaohao.clearing import fees
from piaohao.clearing.orders import PENDING, SETTLED, business_date
from piaohao.db import exact
from piaohao.db.bulk import insert_rows
from piaohao.db.metadata import UTCDateTime
from piaohao.db.schema import trades
from piaohao.db.schema_clearing import order_splits, settlement_batches
from piaohao.kernel.errors import NoFeeRule, SettlementVerificationFailed
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform
from piaohao.services import notifications


@dataclass
class BatchResult:
    batch_no: str
    seller_id: str
    order_count: int
    seller_amount: int
    split_amount: int
    fee_amount: int


class SetSql:
    """Statements over one set of orders, written once for both databases: a list parameter is an
    array on PostgreSQL (`= ANY(:p)`: one fixed text the planner sees the values of) and JSON text
    on SQLite (`IN (SELECT value FROM json_each(:p))`); rows travel as a JSON array of objects."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect.name
        self.pg = self.dialect == "postgresql"

    def among(self, column: str, name: str) -> str:
        return f"{column} = ANY(:{name})" if self.pg else f"{column} IN (SELECT value FROM json_each(:{name}))"

    def rows(self, name: str, columns: dict[str, str]) -> str:
        """A FROM item `name` over the JSON rows of parameter `name`; `columns`: name -> PostgreSQL type."""
        if self.pg:
            typed = ", ".join(f"{c} {t}" for c, t in columns.items())
            return f"json_to_recordset(CAST(:{name} AS json)) AS {name}({typed})"
        picks = ", ".join(f"json_extract(value, '$.{c}') AS {c}" for c in columns)
        return f"(SELECT {picks} FROM json_each(:{name})) AS {name}"

    def run(self, sql: str, *, lists: dict | None = None, rows: dict | None = None, now: datetime | None = None,
            **scalars):
        lists, rows = lists or {}, rows or {}
        stmt = text(sql)
        params = dict(scalars)
        for name, values in lists.items():
            if self.pg:
                stmt = stmt.bindparams(bindparam(name, type_=ARRAY(String)))
                params[name] = list(values)
            else:
                params[name] = json.dumps(list(values))
        for name, values in rows.items():
            params[name] = json.dumps(values)
        if now is not None:
            stmt = stmt.bindparams(bindparam("now", type_=UTCDateTime()))
            params["now"] = now
        return self.conn.execute(stmt, params)


def largest_remainder(dialect: str) -> str:
    """CTEs `lr_sum`, `lr_floor`, `lr` over a CTE `lr_in` (k1, k2: the allocation's key; total: what
    is allocated; pos, receiver_id: the weight's place, lowest first; weight): `lr` adds `share`,
    total × weight / Σweight by the largest remainder, ties to the earlier place: exactly
    `kernel.money.allocate`. Σweight must be positive."""
    return f"""
lr_sum AS (
  SELECT lr_in.*, SUM(weight) OVER (PARTITION BY k1, k2) AS weight_sum FROM lr_in),
lr_floor AS (
  SELECT lr_sum.*, {exact.muldiv(dialect, "total", "weight", "weight_sum")} AS floor_share,
         {exact.mulmod(dialect, "total", "weight", "weight_sum")} AS remainder
  FROM lr_sum),
lr AS (
  SELECT lr_floor.*, floor_share + CASE
           WHEN ROW_NUMBER() OVER (PARTITION BY k1, k2 ORDER BY remainder DESC, pos, receiver_id)
                <= total - SUM(floor_share) OVER (PARTITION BY k1, k2) THEN 1 ELSE 0 END AS share
  FROM lr_floor)"""


def fee_of(dialect: str, base: str, r: str) -> str:
    """SQL for the fee of rule alias `r` (columns num, den, rounding, fixed_amount, min_fee,
    max_fee) on `base`: exactly `fees.FeeRule.fee` (rate × base rounded, plus the fixed part, at
    least the minimum, at most the maximum, never negative nor above the base; nothing on a base
    <= 0). GREATEST / LEAST (MAX / MIN on SQLite) name each operand once: nested CASEs repeated the
    exact division up to eight times per order."""
    most, least = ("GREATEST", "LEAST") if dialect == "postgresql" else ("MAX", "MIN")
    variable = exact.muldiv(dialect, base, f"{r}.num", f"{r}.den", f"{r}.rounding")
    fee = (f"{most}(0, {least}({most}({variable} + {r}.fixed_amount, {r}.min_fee), "
           f"COALESCE({r}.max_fee, {base}), {base}))")
    return f"(CASE WHEN {base} <= 0 THEN 0 ELSE {fee} END)"


RULE_COLUMNS = {"rule_id": "text", "priority": "integer", "merchant_id": "text", "method": "text",
                "business_type": "text", "currency": "text", "num": "numeric", "den": "numeric",
                "fixed_amount": "bigint", "min_fee": "bigint", "max_fee": "bigint", "rounding": "text",
                "bearer": "text"}


def rules_param(rules: list[fees.FeeRule]) -> list[dict]:
    """The active rules as rows for SQL; the rate as an exact fraction (text: it may exceed 64 bits)."""
    out = []
    for r in rules:
        num, den = r.rate_ratio
        out.append({"rule_id": r.rule_id, "priority": r.priority, "merchant_id": r.merchant_id, "method": r.method,
                    "business_type": r.business_type, "currency": r.currency, "num": str(num), "den": str(den),
                    "fixed_amount": r.fixed_amount, "min_fee": r.min_fee, "max_fee": r.max_fee,
                    "rounding": r.rounding, "bearer": r.bearer})
    return out


@dataclass
class OrderSet:
    """The orders being settled, as the statements take them: `keys` (trade_no, out_order_no and the
    batch_no of the order's seller group) as JSON rows, the trades and batches as lists."""

    keys: list[dict]
    trade_nos: list[str]
    batch_nos: list[str]

    @property
    def lists(self) -> dict:
        return {"trade_nos": self.trade_nos, "batch_nos": self.batch_nos}


KEY_COLUMNS = {"trade_no": "text", "out_order_no": "text", "batch_no": "text"}


def _chosen_orders(sql: SetSql) -> str:
    """CTE `o`: the set's orders (still pending), each with its batch and what was refunded of it
    (refunds that did not fail). Driven by the keys: one primary-key lookup per order."""
    return f"""
o AS MATERIALIZED (
  SELECT t.trade_no, t.out_order_no, keys.batch_no, t.merchant_id, t.kind, t.currency, t.amount,
         t.subsidy_amount,
         COALESCE((SELECT SUM(r.amount) FROM order_refunds r JOIN refunds f ON f.refund_no = r.refund_no
                   WHERE r.trade_no = t.trade_no AND r.out_order_no = t.out_order_no
                     AND f.status <> 'failed'), 0) AS refunded
  FROM {sql.rows("keys", KEY_COLUMNS)}
  JOIN trade_orders t ON t.trade_no = keys.trade_no AND t.out_order_no = keys.out_order_no
  WHERE t.status = '{PENDING}')"""


def _insert_receiver_parts(sql: SetSql, s: OrderSet) -> None:
    """Step 2: every split's part, its refund share taken by the largest remainder."""
    sql.run(f"""
WITH {_chosen_orders(sql)},
lr_in AS (
  SELECT o.trade_no AS k1, o.out_order_no AS k2, o.batch_no, o.refunded AS total, 0 AS pos, '' AS receiver_id,
         o.amount - (SELECT SUM(s.amount) FROM order_splits s
                     WHERE s.trade_no = o.trade_no AND s.out_order_no = o.out_order_no) AS weight
  FROM o
  WHERE EXISTS (SELECT 1 FROM order_splits s WHERE s.trade_no = o.trade_no AND s.out_order_no = o.out_order_no)
  UNION ALL
  SELECT o.trade_no, o.out_order_no, o.batch_no, o.refunded, 1, s.receiver_id, s.amount
  FROM o JOIN order_splits s ON s.trade_no = o.trade_no AND s.out_order_no = o.out_order_no),
{largest_remainder(sql.dialect)}
INSERT INTO settlement_split_details (trade_no, out_order_no, receiver_id, batch_no, amount)
SELECT k1, k2, receiver_id, batch_no, weight - share FROM lr WHERE pos = 1""", rows={"keys": s.keys})


def _fee_rule_ctes(sql: SetSql) -> str:
    """CTEs `om` (the orders with their payment method: the channel's, else the first internal
    one's, 'none' for an unpaid own sale) and `picked` (per distinct merchant, method, business
    type and currency, the rules that match, `choice` 1 the one that applies). MATERIALIZED: the
    few combinations are matched once; inlined, PostgreSQL (estimating the orders at one row)
    re-matched them for every order: 5 s per 5,000 orders."""
    return f"""
{_chosen_orders(sql)},
om AS (
  SELECT o.*, COALESCE((SELECT c.method FROM trade_components c WHERE c.trade_no = o.trade_no AND c.status = 'paid'
                        ORDER BY CASE WHEN c.kind = 'channel' THEN 0 ELSE 1 END, c.attempt, c.method
                        LIMIT 1), 'none') AS method
  FROM o),
combos AS MATERIALIZED (SELECT DISTINCT merchant_id, method, kind, currency FROM om),
picked AS MATERIALIZED (
  SELECT c.merchant_id AS c_merchant_id, c.method AS c_method, c.kind AS c_kind, c.currency AS c_currency, rules.*,
         ROW_NUMBER() OVER (PARTITION BY c.merchant_id, c.method, c.kind, c.currency
                            ORDER BY rules.priority,
                                     (CASE WHEN rules.merchant_id IS NULL THEN 0 ELSE 1 END
                                      + CASE WHEN rules.method IS NULL THEN 0 ELSE 1 END
                                      + CASE WHEN rules.business_type IS NULL THEN 0 ELSE 1 END
                                      + CASE WHEN rules.currency IS NULL THEN 0 ELSE 1 END) DESC,
                                     rules.rule_id) AS choice
  FROM combos c JOIN {sql.rows("rules", RULE_COLUMNS)}
    ON (rules.merchant_id IS NULL OR rules.merchant_id = c.merchant_id)
   AND (rules.method IS NULL OR rules.method = c.method)
   AND (rules.business_type IS NULL OR rules.business_type = c.kind)
   AND (rules.currency IS NULL OR rules.currency = c.currency))"""


def _check_fee_rules(sql: SetSql, s: OrderSet, rules: list[dict]) -> None:
    unmatched = sql.run(f"""
WITH {_fee_rule_ctes(sql)}
SELECT merchant_id, method, kind, currency FROM combos
WHERE NOT EXISTS (SELECT 1 FROM picked WHERE c_merchant_id = combos.merchant_id AND c_method = combos.method
                  AND c_kind = combos.kind AND c_currency = combos.currency)
LIMIT 1""", rows={"keys": s.keys, "rules": rules}).first()
    if unmatched is not None:
        merchant_id, method, kind, currency = unmatched
        raise NoFeeRule(f"no fee rule matches merchant {merchant_id}, method {method}, {kind}, {currency}")


def _insert_details(sql: SetSql, s: OrderSet, rules: list[dict], now: datetime) -> None:
    """Step 3: one detail per order: the fee by its rule, the seller's part what is left."""
    fee = fee_of(sql.dialect, "d.base", "d")
    least = "LEAST" if sql.pg else "MIN"
    sql.run(f"""
WITH {_fee_rule_ctes(sql)},
parts AS (
  SELECT trade_no, out_order_no, SUM(amount) AS split_amount FROM settlement_split_details
  WHERE {sql.among("trade_no", "trade_nos")} AND {sql.among("batch_no", "batch_nos")}
  GROUP BY trade_no, out_order_no),
d AS (
  SELECT om.trade_no, om.out_order_no, om.batch_no, om.amount, om.refunded, om.subsidy_amount,
         COALESCE(parts.split_amount, 0) AS split_amount,
         om.amount - om.refunded - COALESCE(parts.split_amount, 0) AS base,
         picked.rule_id, picked.num, picked.den, picked.rounding, picked.fixed_amount, picked.min_fee,
         picked.max_fee, picked.bearer
  FROM om
  JOIN picked ON picked.c_merchant_id = om.merchant_id AND picked.c_method = om.method AND picked.c_kind = om.kind
             AND picked.c_currency = om.currency AND picked.choice = 1
  LEFT JOIN parts ON parts.trade_no = om.trade_no AND parts.out_order_no = om.out_order_no),
f AS MATERIALIZED (SELECT d.*, {fee} AS fee FROM d),
charged AS (
  SELECT f.*,
         CASE WHEN bearer = 'seller' THEN {least}(fee, base + subsidy_amount) ELSE 0 END AS seller_fee,
         CASE WHEN bearer = 'platform' THEN fee ELSE 0 END AS platform_fee
  FROM f)
INSERT INTO settlement_details (trade_no, out_order_no, batch_no, amount, refunded_amount, subsidy_amount,
                                split_amount, fee_amount, platform_fee_amount, fee_rule_id, seller_amount, created_at)
SELECT trade_no, out_order_no, batch_no, amount, refunded, subsidy_amount, split_amount, seller_fee, platform_fee,
       rule_id, base + subsidy_amount - seller_fee, :now
FROM charged""", lists=s.lists, rows={"keys": s.keys, "rules": rules}, now=now)


def _total_batches(sql: SetSql, s: OrderSet) -> int:
    """Step 4: each batch row's totals from its details."""
    return sql.run(f"""
UPDATE settlement_batches SET order_count = t.order_count, gross_amount = t.gross_amount,
       refunded_amount = t.refunded_amount, subsidy_amount = t.subsidy_amount, split_amount = t.split_amount,
       fee_amount = t.fee_amount, platform_fee_amount = t.platform_fee_amount, seller_amount = t.seller_amount
FROM (SELECT batch_no, COUNT(*) AS order_count, SUM(amount) AS gross_amount, SUM(refunded_amount) AS refunded_amount,
             SUM(subsidy_amount) AS subsidy_amount, SUM(split_amount) AS split_amount, SUM(fee_amount) AS fee_amount,
             SUM(platform_fee_amount) AS platform_fee_amount, SUM(seller_amount) AS seller_amount
      FROM settlement_details WHERE {sql.among("batch_no", "batch_nos")} GROUP BY batch_no) AS t
WHERE settlement_batches.batch_no = t.batch_no""", lists={"batch_nos": s.batch_nos}).rowcount


def _verify_parts(sql: SetSql, s: OrderSet) -> None:
    """Step 5, per order: details conserve money, every order is in its own seller's batch, and
    every split of the set has its part, none above the split."""
    unbalanced, misfiled, splits, missing = sql.run(f"""
SELECT
  (SELECT COUNT(*) FROM settlement_details d
   WHERE {sql.among("d.trade_no", "trade_nos")} AND {sql.among("d.batch_no", "batch_nos")}
     AND NOT (d.amount - d.refunded_amount + d.subsidy_amount = d.seller_amount + d.split_amount + d.fee_amount
              AND d.refunded_amount >= 0 AND d.refunded_amount <= d.amount AND d.platform_fee_amount >= 0)),
  (SELECT COUNT(*) FROM settlement_details d
   JOIN trade_orders t ON t.trade_no = d.trade_no AND t.out_order_no = d.out_order_no
   JOIN settlement_batches b ON b.batch_no = d.batch_no
   WHERE {sql.among("d.trade_no", "trade_nos")} AND {sql.among("d.batch_no", "batch_nos")}
     AND NOT (b.merchant_id = t.merchant_id AND b.seller_type = t.seller_type AND b.seller_id = t.seller_id
              AND b.currency = t.currency)),
  COUNT(*), COUNT(*) - COUNT(sd.amount) + COALESCE(SUM(CASE WHEN sd.amount > s.amount THEN 1 ELSE 0 END), 0)
FROM {sql.rows("keys", KEY_COLUMNS)}
JOIN order_splits s ON s.trade_no = keys.trade_no AND s.out_order_no = keys.out_order_no
LEFT JOIN settlement_split_details sd ON sd.trade_no = s.trade_no AND sd.out_order_no = s.out_order_no
                                     AND sd.receiver_id = s.receiver_id AND sd.batch_no = keys.batch_no""",
                                                lists=s.lists, rows={"keys": s.keys}).one()
    if unbalanced:
        raise SettlementVerificationFailed(f"{unbalanced} details do not account for every minor unit")
    if misfiled:
        raise SettlementVerificationFailed(f"{misfiled} orders are in another seller's batch")
    if missing:
        raise SettlementVerificationFailed(f"{missing} of {splits} splits have no part or one above the split")


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


GROUP = ("merchant_id", "seller_type", "seller_id", "currency")
def _in_flight(sql: SetSql, trade_nos: list) -> set[tuple[str, str]]:
    """The orders of these trades with a refund still at the channel (neither failed nor succeeded)."""
    return {(t, o) for t, o in sql.run(f"""
SELECT DISTINCT r.trade_no, r.out_order_no FROM order_refunds r JOIN refunds f ON f.refund_no = r.refund_no
WHERE {sql.among("r.trade_no", "trade_nos")} AND f.status NOT IN ('failed', 'succeeded')""",
                                       lists={"trade_nos": trade_nos})}


def _read_batches(sql: SetSql, s: OrderSet, expected: Counter) -> list[settle_book.BatchMoney]:
    """Step 5, per batch: what its ledger entry must move, checked against its orders and receivers."""
    receivers: dict[str, dict[str, int]] = defaultdict(dict)
    for batch_no, receiver_id, amount in sql.run(f"""
SELECT batch_no, receiver_id, SUM(amount) FROM settlement_split_details
WHERE {sql.among("trade_no", "trade_nos")} AND {sql.among("batch_no", "batch_nos")}
GROUP BY batch_no, receiver_id""", lists=s.lists):
        receivers[batch_no][receiver_id] = int(amount)
    out = []
    for b in sql.run(f"""
SELECT batch_no, merchant_id, seller_type, seller_id, currency, order_count, gross_amount, refunded_amount,
       subsidy_amount, split_amount, fee_amount, seller_amount
FROM settlement_batches WHERE {sql.among("batch_no", "batch_nos")}""", lists={"batch_nos": s.batch_nos}).mappings():
        m = settle_book.BatchMoney(b["batch_no"], b["merchant_id"], b["seller_type"], b["seller_id"], b["currency"],
                                   pending_out=b["gross_amount"] - b["refunded_amount"], subsidy=b["subsidy_amount"],
                                   seller_amount=b["seller_amount"], fee=b["fee_amount"])
        m.to_receiver.update(receivers.get(m.batch_no, {}))
        if b["order_count"] != expected[m.batch_no]:
            raise SettlementVerificationFailed(f"batch {m.batch_no}: {b['order_count']} details for "
                                               f"{expected[m.batch_no]} orders")
        if m.pending_out + m.subsidy != m.seller_amount + b["split_amount"] + m.fee:
            raise SettlementVerificationFailed(f"batch {m.batch_no}: what moves in is not what moves out")
        if sum(m.to_receiver.values()) != b["split_amount"]:
            raise SettlementVerificationFailed(f"batch {m.batch_no}: receiver rows sum to "
                                               f"{sum(m.to_receiver.values())}, details to {b['split_amount']}")
        out.append(m)
    if len(out) != len(s.batch_nos):
        raise SettlementVerificationFailed(f"{len(out)} batch rows for {len(s.batch_nos)} batches")
    return out


def _mark_settled(sql: SetSql, s: OrderSet, expected: Counter, now: datetime) -> None:
    """Step 5, the state change: pending -> settled for exactly each batch's orders."""
    changed = Counter(b for (b,) in sql.run(f"""
UPDATE trade_orders SET status = '{SETTLED}', settled_at = :now, batch_no = keys.batch_no, updated_at = :now
FROM {sql.rows("keys", KEY_COLUMNS)}
WHERE trade_orders.trade_no = keys.trade_no AND trade_orders.out_order_no = keys.out_order_no
  AND trade_orders.status = '{PENDING}'
RETURNING trade_orders.batch_no""", rows={"keys": s.keys}, now=now))
    if changed != expected:
        wrong = next(b for b in s.batch_nos if changed[b] != expected[b])
        raise SettlementVerificationFailed(f"batch {wrong}: {changed[wrong]} orders changed state, "
                                           f"expected {expected[wrong]}")


def _settled_events(conn: Connection, batches: list[settle_book.BatchMoney], orders_of: dict[str, list],
                    now: datetime) -> list[dict]:
    """One `settlement.settled` event per batch, to the notify_url of the batch's latest trade."""
    latest = {b.batch_no: max(orders_of[b.batch_no], key=lambda o: (o["paid_at"] or now, o["trade_no"]))["trade_no"]
              for b in batches}
    notify = {t: (app_id, url) for t, app_id, url in conn.execute(
        select(trades.c.trade_no, trades.c.app_id, trades.c.notify_url)
        .where(trades.c.trade_no.in_(sorted(set(latest.values())))))}
    events = []
    for m in batches:
        app_id, url = notify.get(latest[m.batch_no], (None, None))
        if app_id is None:
            continue
        orders = orders_of[m.batch_no]
        events.append({"merchant_id": m.merchant_id, "app_id": app_id, "type": "settlement.settled",
                       "subject_id": m.batch_no, "notify_url": url, "data": {
                           "batch_no": m.batch_no, "seller_type": m.seller_type, "seller_id": m.seller_id,
                           "currency": m.currency, "order_count": len(orders),
                           "seller_amount": m.seller_amount, "split_amount": sum(m.to_receiver.values()),
                           "fee_amount": m.fee,
                           "orders": [{"trade_no": o["trade_no"], "out_order_no": o["out_order_no"]}
                                      for o in orders[:1000]]}})
    return events


def settle_orders(conn: Connection, p: Platform, orders: list, *, trigger: str, now: datetime,
                  accounts: settle_book.SettlementAccounts | None = None) -> tuple[list[BatchResult], list]:
    """Settle locked pending orders, grouped by seller and currency. Returns (batches, skipped):
    orders with a refund still at the channel are skipped (they settle once it is final).

    `accounts`: the ledger accounts opened ahead by `open_accounts_ahead`, in a transaction of
    their own; those missing from it are created here."""
    if not orders:
        return [], []
    sql = SetSql(conn)
    in_flight = _in_flight(sql, sorted({o["trade_no"] for o in orders}))
    ready = [o for o in orders if (o["trade_no"], o["out_order_no"]) not in in_flight]
    skipped = [o for o in orders if (o["trade_no"], o["out_order_no"]) in in_flight]
    if not ready:
        return [], skipped
    if any(o["status"] != PENDING for o in ready):
        raise SettlementVerificationFailed("a batch settles pending orders only")
    groups = {g: new_id("stb") for g in sorted({tuple(o[c] for c in GROUP) for o in ready})}
    orders_of: dict[str, list] = defaultdict(list)
    keys = []
    for o in ready:
        b = groups[tuple(o[c] for c in GROUP)]
        orders_of[b].append(o)
        keys.append({"trade_no": o["trade_no"], "out_order_no": o["out_order_no"], "batch_no": b})
    expected = Counter({b: len(os) for b, os in orders_of.items()})
    s = OrderSet(keys, sorted({o["trade_no"] for o in ready}), list(groups.values()))
    day = business_date(p, now)
    insert_rows(conn, settlement_batches, [{
        "batch_no": b, "merchant_id": g[0], "seller_type": g[1], "seller_id": g[2], "currency": g[3],
        "business_date": day, "trigger": trigger, "order_count": 0, "gross_amount": 0, "refunded_amount": 0,
        "subsidy_amount": 0, "split_amount": 0, "fee_amount": 0, "platform_fee_amount": 0, "seller_amount": 0,
        "status": SETTLED, "created_at": now} for g, b in groups.items()])
    rules = rules_param(fees.load_rules(conn))
    _check_fee_rules(sql, s, rules)
    _insert_receiver_parts(sql, s)
    _insert_details(sql, s, rules, now)
    if _total_batches(sql, s) != len(s.batch_nos):
        raise SettlementVerificationFailed("a batch has no details")
    _verify_parts(sql, s)
    money = _read_batches(sql, s, expected)
    _mark_settled(sql, s, expected, now)
    wants = settle_book.post_batches(conn, money, at=now, accounts=accounts)
    settle_book.verify_batch_entries(conn, wants)
    by_no = {m.batch_no: m for m in money}
    ordered = [by_no[b] for b in s.batch_nos]
    notifications.enqueue_many(conn, _settled_events(conn, ordered, orders_of, now), now=now, tz=p.settings.tz)
    return [BatchResult(m.batch_no, m.seller_id, expected[m.batch_no], m.seller_amount,
                        sum(m.to_receiver.values()), m.fee) for m in ordered], skipped
