"""Equivalence: the set-based settlement (chunks of many sellers, bulk writes, set-based checks,
one ledger entry per batch) gives exactly the batches, details, receiver rows and ledger entries
of a simple per-order reference (fee rule = first match in priority order, `settle_order` on each
order, one batch per seller and currency), on random orders, splits, refunds and fee rules.
Service level, both databases."""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, update

from piaohao.books import chart
from piaohao.books.settle import batch_key
from piaohao.clearing.batches import run_due
from piaohao.clearing.fees import FeeRule, add_rule, load_rules
from piaohao.db.schema import trade_components, trades
from piaohao.db.schema_clearing import (
    fee_rules,
    order_refunds,
    order_splits,
    settlement_batches,
    settlement_details,
    settlement_split_details,
    trade_orders,
)
from piaohao.db.schema_refunds import refunds
from piaohao.domain.splits import settle_order
from piaohao.kernel.errors import NoFeeRule
from piaohao.ledger import write as ledger
from piaohao.services.merchants import create_merchant

SELLERS, RECEIVERS, METHODS = 4, 5, ("alipay", "wechat", "balance")

order_st = st.fixed_dictionaries({
    "amount": st.integers(1, 20_000),
    "subsidy": st.integers(0, 500),
    "seller": st.integers(0, SELLERS - 1),
    "own": st.booleans(),
    "method": st.sampled_from(METHODS),
    "splits": st.lists(st.tuples(st.integers(0, RECEIVERS - 1), st.integers(1, 10)), max_size=3,
                       unique_by=lambda x: x[0]),
    "refunds": st.lists(st.tuples(st.integers(1, 40), st.sampled_from(["succeeded", "failed", "processing"])),
                        max_size=2),
})
rule_st = st.fixed_dictionaries({
    "priority": st.integers(1, 5),
    "rate_bp": st.decimals(min_value=0, max_value=300, places=2),
    "fixed": st.integers(0, 30),
    "min_fee": st.integers(0, 20),
    "rounding": st.sampled_from(["half_up", "floor", "ceil"]),
    "bearer": st.sampled_from(["seller", "platform"]),
    "method": st.sampled_from([None, *METHODS]),
    "business_type": st.sampled_from([None, "order", "own"]),
})


def _seed(p, mch: str, app: str, orders: list[dict], now) -> list[dict]:
    """Paid orders written directly (what payment and clearing leave behind); sellers funded."""
    rows, due, tag = [], now - timedelta(days=1), mch[-10:]

    def tx(conn):
        pending: dict[tuple, int] = defaultdict(int)
        for i, o in enumerate(orders):
            trade_no = f"teq{tag}{i:04d}"
            seller_type, seller_id = ("merchant", mch) if o["own"] else ("sub_merchant", f"sub{tag}{o['seller']}")
            splits = [(f"rcv{tag}{r}" if r else "platform", o["amount"] * pct // 100) for r, pct in o["splits"]]
            splits = [(r, a) for r, a in splits if a > 0]
            conn.execute(insert(trades).values(
                trade_no=trade_no, merchant_id=mch, app_id=app, out_trade_no=f"E{i}", amount=o["amount"],
                currency="CNY", subject="eq", purpose="sale", status="succeeded", refunded_amount=0,
                request_hash="x", cashier_token=f"ct{tag}{i}", expires_at=now, paid_at=now, created_at=now,
                updated_at=now))
            conn.execute(insert(trade_components).values(
                trade_no=trade_no, attempt="direct", method=o["method"], kind="internal", amount=o["amount"],
                refunded_amount=0, status="paid", created_at=now, updated_at=now))
            conn.execute(insert(trade_orders).values(
                trade_no=trade_no, out_order_no=":own" if o["own"] else "O1", merchant_id=mch,
                kind="own" if o["own"] else "order", seller_type=seller_type, seller_id=seller_id, currency="CNY",
                amount=o["amount"], subsidy_amount=o["subsidy"], split_amount=sum(a for _, a in splits),
                position=0, status="pending_settlement", paid_at=now + timedelta(seconds=i), settle_due_at=due,
                created_at=now, updated_at=now))
            out_order_no = ":own" if o["own"] else "O1"
            for r, a in splits:
                conn.execute(insert(order_splits).values(trade_no=trade_no, out_order_no=out_order_no,
                                                         receiver_id=r, amount=a))
            refunded, in_flight = 0, False
            for j, (pct, status) in enumerate(o["refunds"]):
                amount = min(o["amount"] * pct // 100, o["amount"] - refunded)
                if amount <= 0:
                    continue
                refunded += amount if status != "failed" else 0
                in_flight = in_flight or status == "processing"
                conn.execute(insert(refunds).values(
                    refund_no=f"rf{tag}{i}-{j}", trade_no=trade_no, merchant_id=mch, app_id=app, out_request_no=f"R{j}",
                    kind="merchant", amount=amount, channel_amount=0, currency="CNY", status=status,
                    created_at=now, updated_at=now))
                conn.execute(insert(order_refunds).values(refund_no=f"rf{tag}{i}-{j}", trade_no=trade_no,
                                                          out_order_no=out_order_no, amount=amount, phase="before",
                                                          created_at=now))
            pending[(seller_type, seller_id)] += o["amount"] - refunded
            rows.append({"trade_no": trade_no, "out_order_no": out_order_no, "kind": "own" if o["own"] else "order",
                         "seller": (seller_type, seller_id), "amount": o["amount"], "subsidy": o["subsidy"],
                         "splits": sorted(splits), "refunded": refunded, "method": o["method"],
                         "in_flight": in_flight})
        reserve = chart.platform_reserve(conn, "CNY")
        for (seller_type, seller_id), amount in pending.items():
            if amount > 0:
                ledger.transfer(conn, ("eq", seller_id, "fund"), reserve.account_id,
                                chart.seller_pending(conn, seller_type, seller_id, "CNY").account_id, amount, at=now)

    p.db.write(tx)
    return rows


def _reference(rows: list[dict], rules: list[FeeRule], mch: str):
    """Per order: (detail fields, receiver parts); per seller: totals; all by the simple path."""
    details, parts = {}, {}
    for r in rows:
        if r["in_flight"]:
            continue
        rule = next(x for x in rules if x.matches(merchant_id=mch, method=r["method"], business_type=r["kind"],
                                                   currency="CNY"))
        s = settle_order(r["amount"], [a for _, a in r["splits"]], r["refunded"], r["subsidy"],
                         lambda base, rule=rule: (rule.fee(base), rule.bearer))
        key = (r["trade_no"], r["out_order_no"])
        details[key] = (r["seller"], r["amount"], r["amount"] - s.pending_out, s.subsidy, sum(s.split_parts), s.fee,
                        s.platform_fee, rule.rule_id, s.seller_amount)
        parts[key] = {rid: x for (rid, _), x in zip(r["splits"], s.split_parts, strict=True)}
    return details, parts


@settings(max_examples=int(os.environ.get("EQ_EXAMPLES", "8")), deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(orders=st.lists(order_st, min_size=1, max_size=40), rules=st.lists(rule_st, max_size=3),
       chunk=st.sampled_from([3, 7, 1000]))
def test_set_based_settlement_equals_the_per_order_reference(make_platform, orders, rules, chunk):
    p = _platform(make_platform)
    now = p.clock.now()
    creds = create_merchant(p, "Eq", now)
    mch = creds.merchant_id
    for r in rules:
        p.db.write(lambda conn, r=r: add_rule(conn, now, priority=r["priority"], merchant_id=mch, rate_bp=r["rate_bp"],
                                              fixed_amount=r["fixed"], min_fee=r["min_fee"], rounding=r["rounding"],
                                              bearer=r["bearer"], method=r["method"],
                                              business_type=r["business_type"]))
    # The rules in force for this merchant, tried in order (the seeded `default` last).
    with p.db.read() as conn:
        all_rules = [x for x in load_rules(conn) if x.merchant_id in (None, mch)]
    rows = _seed(p, mch, creds.app_id, orders, now)
    want_details, want_parts = _reference(rows, all_rules, mch)

    with p.db.read() as conn:  # earlier examples' orders with a refund in flight are still due
        due = conn.execute(select(func.count()).select_from(trade_orders).where(
            trade_orders.c.status == "pending_settlement")).scalar_one()
    run_due(p, now, chunk=chunk)

    with p.db.read() as conn:
        d = settlement_details.c
        got = conn.execute(select(settlement_details, settlement_batches.c.seller_type, settlement_batches.c.seller_id)
                           .join(settlement_batches, settlement_batches.c.batch_no == d.batch_no)
                           .where(settlement_batches.c.merchant_id == mch)).mappings().all()
        got_details = {(g["trade_no"], g["out_order_no"]): (
            (g["seller_type"], g["seller_id"]), g["amount"], g["refunded_amount"], g["subsidy_amount"],
            g["split_amount"], g["fee_amount"], g["platform_fee_amount"], g["fee_rule_id"], g["seller_amount"])
            for g in got}
        assert got_details == want_details
        got_parts: dict = defaultdict(dict)
        for s in conn.execute(select(settlement_split_details).where(
                settlement_split_details.c.trade_no.in_([k[0] for k in want_details]))).mappings():
            got_parts[(s["trade_no"], s["out_order_no"])][s["receiver_id"]] = s["amount"]
        assert {k: v for k, v in want_parts.items() if v} == dict(got_parts)
        batches = conn.execute(select(settlement_batches).where(settlement_batches.c.merchant_id == mch)
                               ).mappings().all()
        by_batch: dict = defaultdict(list)
        for g in got:
            by_batch[g["batch_no"]].append((g["trade_no"], g["out_order_no"]))
        if chunk >= due:  # one page: exactly one batch per seller
            assert sorted((b["seller_type"], b["seller_id"]) for b in batches) == sorted(
                {v[0] for v in want_details.values()})
        for b in batches:
            keys = by_batch[b["batch_no"]]
            ds = [want_details[k] for k in keys]
            assert (b["order_count"], b["gross_amount"], b["refunded_amount"], b["subsidy_amount"],
                    b["split_amount"], b["fee_amount"], b["platform_fee_amount"], b["seller_amount"]) == (
                len(ds), *(sum(x[i] for x in ds) for i in (1, 2, 3, 4, 5, 6, 8)))
            # the entry: pending out + subsidy in; seller, fee income and each receiver out
            seller_type, seller_id = b["seller_type"], b["seller_id"]
            want: dict = defaultdict(int)
            want[chart.seller_pending(conn, seller_type, seller_id, "CNY").account_id] += sum(x[1] - x[2] for x in ds)
            if b["subsidy_amount"]:
                want[chart.platform_marketing_expense(conn, "CNY").account_id] += b["subsidy_amount"]
            want[chart.seller_settled(conn, seller_type, seller_id, "CNY").account_id] -= b["seller_amount"]
            if b["fee_amount"]:
                want[chart.platform_fee_income(conn, "CNY").account_id] -= b["fee_amount"]
            for k in keys:
                for rid, x in want_parts[k].items():
                    want[chart.receiver_settled(conn, mch, rid, "CNY").account_id] -= x
            assert ledger.entry_movements(conn, batch_key(b["batch_no"])) == {a: x for a, x in want.items() if x}
        pending = {(r["trade_no"], r["out_order_no"]) for r in rows if r["in_flight"]}
        left = {(t["trade_no"], t["out_order_no"]) for t in conn.execute(select(trade_orders).where(
            trade_orders.c.merchant_id == mch, trade_orders.c.status == "pending_settlement")).mappings()}
        assert left == pending
    assert ledger.check(p.db) == []


_PLATFORMS: dict = {}


def _platform(make_platform):
    key = id(make_platform)
    if key not in _PLATFORMS:
        _PLATFORMS.clear()
        _PLATFORMS[key] = make_platform(workers=False).platform
    return _PLATFORMS[key]


def test_statement_streams_in_pieces_with_one_row_per_order_and_a_total(make_platform, monkeypatch):
    from piaohao.clearing import batches

    p = make_platform(workers=False).platform
    now = p.clock.now()
    creds = create_merchant(p, "St", now)
    orders = [{"amount": 100 + i, "subsidy": 0, "seller": 0, "own": False, "method": "alipay", "splits": [],
               "refunds": []} for i in range(7)]
    _seed(p, creds.merchant_id, creds.app_id, orders, now)
    summary = run_due(p, now)
    monkeypatch.setattr(batches, "STATEMENT_ROWS_PER_CHUNK", 3)
    pieces = list(batches.statement_chunks(p, creds.merchant_id, summary["batch_nos"][0]))
    assert len(pieces) >= 3
    lines = "".join(pieces).splitlines()
    assert lines[0].startswith("batch_no,seller_type") and len(lines) == 1 + 7 + 1
    assert lines[-1].split(",")[3:5] == ["total", "7"]
    assert sum(int(line.split(",")[6]) for line in lines[1:-1]) == int(lines[-1].split(",")[6])


def test_an_order_no_fee_rule_matches_settles_nothing(make_platform):
    """No active rule matches (the seeded catch-all switched off): the run stops with NoFeeRule
    and nothing of the page exists, never a silent zero fee."""
    p = make_platform(workers=False).platform
    now = p.clock.now()
    creds = create_merchant(p, "NoRule", now)
    orders = [{"amount": 500, "subsidy": 0, "seller": 0, "own": False, "method": "alipay", "splits": [(1, 10)],
               "refunds": []}, {"amount": 700, "subsidy": 0, "seller": 1, "own": True, "method": "balance",
                                "splits": [], "refunds": []}]
    rows = _seed(p, creds.merchant_id, creds.app_id, orders, now)
    p.db.write(lambda conn: conn.execute(update(fee_rules).values(active=False)))
    with pytest.raises(NoFeeRule, match="no fee rule matches merchant"):
        run_due(p, now)
    with p.db.read() as conn:
        keys = [r["trade_no"] for r in rows]
        assert conn.execute(select(func.count()).select_from(settlement_details).where(
            settlement_details.c.trade_no.in_(keys))).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(settlement_batches)).scalar_one() == 0
        assert {t["status"] for t in conn.execute(select(trade_orders).where(
            trade_orders.c.trade_no.in_(keys))).mappings()} == {"pending_settlement"}
