"""Property: whatever the orders, splits, subsidies, fee rules and partial refunds (before and after
settlement), every allocation sums to the money that moved, no part is negative, the split cap
holds, every order settles exactly once, and the ledger checks clean. Service level, both databases."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from piaohao.books import chart
from piaohao.clearing import on_trade_paid
from piaohao.clearing.batches import run_due, verify_batch
from piaohao.clearing.fees import add_rule
from piaohao.db.schema import trade_components, trades
from piaohao.db.schema_clearing import settlement_details, settlement_split_details, trade_orders
from piaohao.kernel.errors import PiaohaoError
from piaohao.ledger import write as ledger
from piaohao.services import refunds as refund_svc
from piaohao.services import settlement as settle_svc
from piaohao.services import sub_merchants as subs
from piaohao.services.merchants import create_merchant
from piaohao.services.payouts import BankAccount
from piaohao.services.trades import NewTrade, create_trade

BANK = BankAccount("ICBC", "6222020200112230001", "Li")

order_st = st.fixed_dictionaries({
    "amount": st.integers(1, 50_000),
    "subsidy": st.integers(0, 3_000),
    "split_pcts": st.lists(st.integers(0, 30), max_size=3),
    "seller": st.integers(0, 2),
    "refund_before": st.integers(0, 100),
    "refund_after": st.integers(0, 100),
    "confirm": st.booleans(),
})
fee_st = st.fixed_dictionaries({
    "rate_bp": st.decimals(min_value=0, max_value=500, places=2),
    "fixed": st.integers(0, 50),
    "rounding": st.sampled_from(["half_up", "floor", "ceil"]),
    "bearer": st.sampled_from(["seller", "platform"]),
})


def _pay_with_balance(p, trade_no: str, amount: int, member: str) -> None:
    """What funding.pay_internal_only does, for a member without the members table (service level)."""
    def tx(conn):
        now = p.clock.now()
        t = conn.execute(select(trades).where(trades.c.trade_no == trade_no)).mappings().one()
        source = chart.member_balance(conn, member, "CNY")
        clearing = chart.channel_clearing(conn, "sandbox", "CNY")
        ledger.transfer(conn, ("test", trade_no, "topup"), clearing.account_id, source.account_id, amount, at=now)
        pending = chart.merchant_pending_settlement(conn, t["merchant_id"], "CNY")
        ledger.transfer(conn, ("trade", trade_no, "pay:balance"), source.account_id, pending.account_id, amount,
                        at=now)
        on_trade_paid(conn, p, t, now)
        conn.execute(trade_components.insert().values(
            trade_no=trade_no, attempt="direct", method="balance", kind="internal", amount=amount, refunded_amount=0,
            status="paid", payment_no=None, hold_id=None, member_id=member, created_at=now, updated_at=now))
        conn.execute(update(trades).where(trades.c.trade_no == trade_no).values(status="succeeded", paid_at=now))

    p.db.write(tx)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(orders=st.lists(order_st, min_size=1, max_size=4), fee=fee_st)
def test_allocations_conserve_money_and_orders_settle_once(make_platform, orders, fee):
    p = _platform(make_platform)
    now = p.clock.now()
    creds = create_merchant(p, "Prop", now)
    mch = creds.merchant_id
    p.db.write(lambda conn: add_rule(conn, now, priority=10, merchant_id=mch, rate_bp=fee["rate_bp"],
                                     fixed_amount=fee["fixed"], rounding=fee["rounding"], bearer=fee["bearer"]))
    sellers = []
    for i in range(3):
        view, _ = subs.create_sub_merchant(p, mch, subs.NewSubMerchant(f"S{i}", "s", "individual", "Li",
                                                                       "11010519491231002X", BANK, 7))
        subs.change_status(p, view["sub_merchant_id"], "approve")
        sellers.append(view["sub_merchant_id"])
    receivers = [subs.create_receiver(p, mch, subs.NewReceiver(f"R{i}", "r", BANK))[0]["receiver_id"]
                 for i in range(2)] + ["platform"]
    body = []
    for i, o in enumerate(orders):
        splits = []
        left = o["amount"] * 30 // 100
        for j, pct in enumerate(o["split_pcts"]):
            x = min(o["amount"] * pct // 100, left)
            if x > 0:
                splits.append({"receiver_id": receivers[j], "amount": x})
                left -= x
        body.append({"out_order_no": f"O{i}", "sub_merchant_id": sellers[o["seller"]], "amount": o["amount"],
                     "subsidy_amount": o["subsidy"], "splits": splits})
    total = sum(o["amount"] for o in orders)
    trade, _ = create_trade(p, mch, creds.app_id, NewTrade(out_trade_no="T1", amount=total, currency="CNY",
                                                           subject="p", orders=body, order_timeout_s=900))
    _pay_with_balance(p, trade["trade_no"], total, f"mem-{mch}")
    refunded = 0

    def refund(i: int, pct: int, tag: str) -> None:
        nonlocal refunded
        amount = orders[i]["amount"] * pct // 100
        if amount <= 0:
            return
        try:
            r, _ = refund_svc.create_refund(p, mch, refund_svc.NewRefund(
                out_request_no=f"{tag}{i}", amount=amount, trade_no=trade["trade_no"], out_order_no=f"O{i}"))
        except PiaohaoError as e:
            assert e.code in ("REFUND_AMOUNT_EXCEEDED", "INSUFFICIENT_BALANCE"), e.code
            return
        assert r["status"] == "succeeded"
        refunded += amount

    for i, o in enumerate(orders):
        refund(i, o["refund_before"], "RB")
    confirm = [f"O{i}" for i, o in enumerate(orders) if o["confirm"]]
    if confirm:
        settle_svc.confirm(p, mch, trade["trade_no"], "S1", confirm)
    run_due(p, now.replace(year=now.year + 1))
    for i, o in enumerate(orders):
        refund(i, min(o["refund_after"], 100 - o["refund_before"]), "RA")

    with p.db.read() as conn:
        rows = conn.execute(select(trade_orders).where(trade_orders.c.trade_no == trade["trade_no"])).mappings().all()
        assert all(r["status"] == "settled" for r in rows)
        details = conn.execute(select(settlement_details).where(
            settlement_details.c.trade_no == trade["trade_no"])).mappings().all()
        assert len(details) == len(orders)  # each order exactly once
        for d in details:
            assert min(d["seller_amount"], d["split_amount"], d["fee_amount"], d["refunded_amount"]) >= 0
            assert d["seller_amount"] + d["split_amount"] + d["fee_amount"] == (
                d["amount"] - d["refunded_amount"] + d["subsidy_amount"])
            assert d["split_amount"] * 100 <= d["amount"] * 30
            parts = conn.execute(select(func.coalesce(func.sum(settlement_split_details.c.amount), 0)).where(
                settlement_split_details.c.trade_no == d["trade_no"],
                settlement_split_details.c.out_order_no == d["out_order_no"])).scalar_one()
            assert parts == d["split_amount"]
            assert verify_batch(conn, d["batch_no"]) == []

        def bal(name, owner):
            a = chart.lookup(conn, name, owner, "CNY")
            return ledger.balance(conn, a.account_id).posted if a else 0

        held = (sum(bal("sub_merchant_settled", s) + bal("sub_merchant_pending_settlement", s) for s in sellers)
                + sum(bal("receiver_settled", r) for r in receivers[:2]) + bal("merchant_settled", mch)
                + bal("merchant_pending_settlement", mch))
        fees = sum(d["fee_amount"] for d in details)
        subsidies = sum(o["subsidy"] for o in orders)
        # every minor unit paid in is held by someone, refunded, or is the platform's fee; subsidies added
        assert held + fees == total - refunded + subsidies
    assert ledger.check(p.db) == []


_PLATFORMS: dict = {}


def _platform(make_platform):
    key = id(make_platform)
    if key not in _PLATFORMS:
        _PLATFORMS.clear()
        _PLATFORMS[key] = make_platform(workers=False).platform
    return _PLATFORMS[key]
