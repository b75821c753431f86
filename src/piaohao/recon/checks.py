"""Our records against the ledger and the business rules, over a window of records: the part of
reconciliation that needs no bill. The near-real-time worker runs it every interval over what
changed recently; the T+1 run over the day. Each check is set-based and reads by keyed ranges
(finished_at, updated_at, status indexes), never a full scan of a table that grows with traffic.

The ledger is read only through `piaohao.ledger`'s read functions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from piaohao import ledger
from piaohao.books.collect import payment_key
from piaohao.books.settle import batch_key
from piaohao.db.schema import payments, trade_components, trades
from piaohao.db.schema_clearing import marketing_usage, settlement_batches, settlement_details, trade_orders
from piaohao.db.schema_members import topups
from piaohao.db.schema_refunds import refunds
from piaohao.platform import Platform
from piaohao.recon.findings import Finding

__all__ = ["TRADE_LATE_S", "run_checks"]

TRADE_LATE_S = 600.0  # a trade still pending this long past its expiry is late (the expiry worker missed it)
LATE_S_MIN = 3600.0  # a refund processing / an order unsettled past due this long at least (or the grace)
IN_CHUNK = 900


def _chunks(items: list, n: int = IN_CHUNK):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _debits(movements: dict[str, int]) -> int:
    return sum(x for x in movements.values() if x > 0)


def payments_vs_ledger(conn: Connection, since: datetime) -> list[Finding]:
    """Every succeeded payment has its collection entry, of its amount."""
    rows = conn.execute(select(payments.c.payment_no, payments.c.trade_no, payments.c.channel, payments.c.amount,
                               payments.c.currency, trades.c.purpose, trades.c.paid_payment_no, topups.c.topup_no)
                        .join(trades, trades.c.trade_no == payments.c.trade_no)
                        .outerjoin(topups, topups.c.trade_no == payments.c.trade_no)
                        .where(payments.c.status == "succeeded", payments.c.finished_at >= since)).all()
    keys = [payment_key(r.payment_no) for r in rows]
    keys += [("topup", r.topup_no, "credit") for r in rows if r.topup_no and r.paid_payment_no == r.payment_no]
    moved = ledger.movements_by_keys(conn, keys)
    out = []
    for r in rows:
        mv = moved.get(payment_key(r.payment_no))
        if mv is None and r.topup_no and r.paid_payment_no == r.payment_no:
            mv = moved.get(("topup", r.topup_no, "credit"))
        actual = None if mv is None else _debits(mv)
        if actual != r.amount:
            out.append(Finding("ledger_mismatch", "trade", r.trade_no, r.channel, expected=r.amount, actual=actual,
                               facet=f"collect:{r.payment_no}",
                               details={"payment_no": r.payment_no, "currency": r.currency,
                                        "check": "payment amount = its collection entry"}))
    return out


def refunds_vs_ledger(conn: Connection, since: datetime) -> list[Finding]:
    """Every succeeded refund moved its amount in the books (posted hold or direct entry)."""
    rows = conn.execute(select(refunds).where(refunds.c.status == "succeeded", refunds.c.finished_at >= since)
                        ).mappings().all()

    def keys_of(r) -> list[tuple[str, str, str]]:
        ks = [("refund", r["refund_no"], "succeed"), ("refund", r["refund_no"], "late_succeed"),
              ("refund", r["refund_no"], "late_to_suspense")]
        if r["hold_id"]:
            ks.append(("ledger_hold", r["hold_id"], "post"))
        return ks

    moved = ledger.movements_by_keys(conn, [k for r in rows for k in keys_of(r)])
    out = []
    for r in rows:
        found = {k[2]: moved[k] for k in keys_of(r) if k in moved}
        if list(found) == ["late_to_suspense"]:
            expected = r["channel_amount"]
        else:
            expected = r["amount"]
        actual = sum(_debits(mv) for mv in found.values()) if found else None
        if actual != expected:
            out.append(Finding("ledger_mismatch", "refund", r["refund_no"], r["channel"], expected=expected,
                               actual=actual, facet="refund",
                               details={"trade_no": r["trade_no"], "currency": r["currency"],
                                        "check": "refund amount = its entries"}))
    return out


def trade_sums(conn: Connection, since: datetime) -> list[Finding]:
    """Components, orders and refunds of recently changed paid trades add up to the trade."""
    t = trades.c
    rows = conn.execute(select(t.trade_no, t.amount, t.refunded_amount, t.status).where(
        t.status.in_(("succeeded", "refunded")), t.updated_at >= since)).all()
    out: list[Finding] = []
    by_trade = {r.trade_no: r for r in rows}
    comp: dict[str, int] = defaultdict(int)
    orders: dict[str, int] = defaultdict(int)
    has_orders: set[str] = set()
    refunded: dict[str, int] = defaultdict(int)
    for part in _chunks(sorted(by_trade)):
        for tn, amt in conn.execute(select(trade_components.c.trade_no, func.sum(trade_components.c.amount))
                                    .where(trade_components.c.trade_no.in_(part), trade_components.c.status == "paid")
                                    .group_by(trade_components.c.trade_no)):
            comp[tn] = int(amt)
        for tn, amt in conn.execute(select(trade_orders.c.trade_no, func.sum(trade_orders.c.amount))
                                    .where(trade_orders.c.trade_no.in_(part), trade_orders.c.status != "closed")
                                    .group_by(trade_orders.c.trade_no)):
            orders[tn] = int(amt)
            has_orders.add(tn)
        for tn, amt in conn.execute(select(refunds.c.trade_no, func.sum(refunds.c.amount))
                                    .where(refunds.c.trade_no.in_(part), refunds.c.kind == "merchant",
                                           refunds.c.status != "failed").group_by(refunds.c.trade_no)):
            refunded[tn] = int(amt)
    for tn, r in by_trade.items():
        if comp.get(tn, 0) != r.amount:
            out.append(Finding("sum_mismatch", "trade", tn, expected=r.amount, actual=comp.get(tn, 0),
                               facet="components", details={"check": "paid components = trade amount"}))
        if tn in has_orders and orders[tn] != r.amount:
            out.append(Finding("sum_mismatch", "trade", tn, expected=r.amount, actual=orders[tn], facet="orders",
                               details={"check": "orders = trade amount"}))
        if refunded.get(tn, 0) != r.refunded_amount or r.refunded_amount > r.amount:
            out.append(Finding("sum_mismatch", "trade", tn, expected=refunded.get(tn, 0), actual=r.refunded_amount,
                               facet="refunds", details={"check": "refunds = trade refunded_amount <= amount",
                                                         "amount": r.amount}))
    return out


DETAIL_SUMS = ("amount", "refunded_amount", "subsidy_amount", "split_amount", "fee_amount", "seller_amount")


def settlement_sums(conn: Connection, since: datetime) -> list[Finding]:
    """A batch = the sum of its details, each detail adds up, and the batch's entry moved it."""
    b, d = settlement_batches.c, settlement_details.c
    batches = conn.execute(select(settlement_batches).where(b.created_at >= since)).mappings().all()
    out: list[Finding] = []
    if not batches:
        return out
    nos = [x["batch_no"] for x in batches]
    sums: dict[str, tuple] = {}
    for part in _chunks(nos):
        for row in conn.execute(select(d.batch_no, func.count(), *[func.sum(getattr(d, c)) for c in DETAIL_SUMS])
                                .where(d.batch_no.in_(part)).group_by(d.batch_no)):
            sums[row[0]] = tuple(int(x) for x in row[1:])
        for det in conn.execute(select(settlement_details).where(d.batch_no.in_(part))).mappings():
            if det["amount"] - det["refunded_amount"] + det["subsidy_amount"] != (
                    det["seller_amount"] + det["split_amount"] + det["fee_amount"]):
                out.append(Finding("sum_mismatch", "order", f"{det['trade_no']}/{det['out_order_no']}"[:64],
                                   expected=det["amount"] - det["refunded_amount"] + det["subsidy_amount"],
                                   actual=det["seller_amount"] + det["split_amount"] + det["fee_amount"],
                                   facet="detail", details={"batch_no": det["batch_no"],
                                                            "check": "detail: in = seller + splits + fee"}))
            if det["fee_amount"] < 0 or det["platform_fee_amount"] < 0:
                out.append(Finding("risk_limit", "order", f"{det['trade_no']}/{det['out_order_no']}"[:64],
                                   expected=">= 0", actual=min(det["fee_amount"], det["platform_fee_amount"]),
                                   facet="negative_commission", details={"batch_no": det["batch_no"]}))
    moved = ledger.movements_by_keys(conn, [batch_key(n) for n in nos])
    for x in batches:
        want = (x["order_count"],) + tuple(x["gross_amount" if c == "amount" else c] for c in DETAIL_SUMS)
        got = sums.get(x["batch_no"], (0,) * 7)
        if got != want:
            out.append(Finding("sum_mismatch", "batch", x["batch_no"], expected=list(want), actual=list(got),
                               facet="details", details={"check": "batch = sum of its details",
                                                         "fields": ["order_count", *DETAIL_SUMS]}))
        inflow = x["gross_amount"] - x["refunded_amount"] + x["subsidy_amount"]
        mv = moved.get(batch_key(x["batch_no"]))
        actual = None if mv is None else _debits(mv)
        if inflow and actual != inflow:
            out.append(Finding("ledger_mismatch", "batch", x["batch_no"], expected=inflow, actual=actual,
                               facet="settle", details={"currency": x["currency"],
                                                        "check": "batch = its settlement entry"}))
    return out


def sequence(conn: Connection, since: datetime) -> list[Finding]:
    """Steps out of order: a refund of an unpaid trade, a settled order of an unpaid trade."""
    out = []
    for rn, tn, st in conn.execute(select(refunds.c.refund_no, trades.c.trade_no, trades.c.status)
                                   .join(trades, trades.c.trade_no == refunds.c.trade_no)
                                   .where(refunds.c.kind == "merchant", refunds.c.status != "failed",
                                          refunds.c.updated_at >= since,
                                          trades.c.status.not_in(("succeeded", "refunded")))):
        out.append(Finding("sequence", "refund", rn, expected="trade paid", actual=st, facet="refund_unpaid",
                           details={"trade_no": tn}))
    for tn, on, st in conn.execute(select(trade_orders.c.trade_no, trade_orders.c.out_order_no, trades.c.status)
                                   .join(trades, trades.c.trade_no == trade_orders.c.trade_no)
                                   .where(trade_orders.c.status == "settled", trade_orders.c.updated_at >= since,
                                          trades.c.status.not_in(("succeeded", "refunded")))):
        out.append(Finding("sequence", "order", f"{tn}/{on}"[:64], expected="trade paid", actual=st,
                           facet="settled_unpaid", details={"trade_no": tn}))
    return out


def timeliness(conn: Connection, p: Platform, now: datetime) -> list[Finding]:
    """Late: trades still pending past expiry, refunds processing past the grace, orders unsettled past due."""
    grace = timedelta(seconds=max(p.settings.recon_grace_s, LATE_S_MIN))
    out = []
    for tn, exp in conn.execute(select(trades.c.trade_no, trades.c.expires_at).where(
            trades.c.status == "pending", trades.c.expires_at < now - timedelta(seconds=TRADE_LATE_S))):
        out.append(Finding("timeliness", "trade", tn, expected="closed", actual="pending", facet="expiry",
                           details={"expires_at": exp.isoformat()}))
    for rn, created in conn.execute(select(refunds.c.refund_no, refunds.c.created_at).where(
            refunds.c.status == "processing", refunds.c.created_at < now - grace)):
        out.append(Finding("timeliness", "refund", rn, expected="final", actual="processing", facet="stuck",
                           details={"created_at": created.isoformat()}))
    for tn, on, due in conn.execute(select(trade_orders.c.trade_no, trade_orders.c.out_order_no,
                                           trade_orders.c.settle_due_at).where(
            trade_orders.c.status == "pending_settlement", trade_orders.c.settle_due_at < now - grace)):
        out.append(Finding("timeliness", "order", f"{tn}/{on}"[:64], expected="settled", actual="pending_settlement",
                           facet="settlement", details={"settle_due_at": due.isoformat()}))
    return out


def risk_limits(conn: Connection, p: Platform, since: datetime) -> list[Finding]:
    """A split above the ratio limit; marketing above the daily cap."""
    out = []
    pct = p.settings.split_ratio_max_pct
    o = trade_orders.c
    for tn, on, amount, split in conn.execute(select(o.trade_no, o.out_order_no, o.amount, o.split_amount).where(
            o.updated_at >= since, o.split_amount * 100 > o.amount * pct)):
        out.append(Finding("risk_limit", "order", f"{tn}/{on}"[:64], expected=f"<= {pct}% of {amount}", actual=split,
                           facet="split_ratio", details={"trade_no": tn}))
    cap = p.settings.marketing_daily_cap
    if cap is not None:
        m = marketing_usage.c
        for mid, day, cur, used in conn.execute(select(m.merchant_id, m.business_date, m.currency, m.used)
                                                .where(m.used > cap)):
            out.append(Finding("risk_limit", "merchant", mid, expected=cap, actual=int(used),
                               facet=f"marketing:{day}:{cur}", business_date=day))
    return out


def run_checks(p: Platform, since: datetime, now: datetime) -> list[Finding]:
    """Every record check over records that changed since `since` (and the late ones of any age)."""
    with p.db.read() as conn:
        out = payments_vs_ledger(conn, since) + refunds_vs_ledger(conn, since)
        out += trade_sums(conn, since) + settlement_sums(conn, since) + sequence(conn, since)
        out += timeliness(conn, p, now) + risk_limits(conn, p, since)
    return out
