"""The chart of accounts and the documented flows (docs/ledger.md) end to end."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from piaohao.books import chart as coa
from piaohao.db.schema_ledger import ledger_accounts
from piaohao.ledger.write import (
    Constraint,
    InsufficientFunds,
    NormalSide,
    balance,
    check,
    credit,
    debit,
    post_entry,
    post_hold,
    reserve,
    transfer,
)


def test_standard_accounts_have_documented_shape(db):
    def make(c):
        return {
            "clearing": coa.channel_clearing(c, "sandbox", "CNY"),
            "reserve": coa.platform_reserve(c, "CNY"),
            "fee": coa.platform_fee_income(c, "CNY"),
            "mkt": coa.platform_marketing_expense(c, "CNY"),
            "suspense": coa.platform_suspense(c, "CNY"),
            "pending": coa.merchant_pending_settlement(c, "m1", "CNY"),
            "settled": coa.merchant_settled(c, "m1", "CNY"),
            "balance": coa.member_balance(c, "u1", "CNY"),
            "coins": coa.member_coins(c, "u1", "CNY"),
            "credit": coa.member_credit(c, "u1", "CNY", credit_limit=5000),
            "frozen": coa.member_frozen(c, "u1", "CNY"),
        }

    acc = db.write(make)
    assert acc["clearing"].owner_type == "channel" and acc["clearing"].shard_count == coa.HOT_ACCOUNT_SHARDS
    assert acc["reserve"].owner_id == coa.PLATFORM_OWNER_ID
    assert acc["fee"].normal_side is NormalSide.CREDIT and acc["mkt"].normal_side is NormalSide.DEBIT
    assert acc["pending"].constraint is Constraint.NON_NEGATIVE
    assert acc["credit"].constraint is Constraint.CREDIT_LIMIT and acc["credit"].credit_limit == 5000
    assert db.write(make)["balance"].account_id == acc["balance"].account_id  # get, not create
    with db.read() as c:
        assert coa.lookup(c, "member_balance", "u1", "CNY").account_id == acc["balance"].account_id
        assert coa.lookup(c, "member_balance", "nobody", "CNY") is None


def test_documented_flows(db):
    """Collect, top-up, pay by balance/coins/credit, withdrawal, refund, settlement: books stay clean."""

    def flows(c):
        clr, reserve_acc = coa.channel_clearing(c, "sandbox", "CNY"), coa.platform_reserve(c, "CNY")
        fee, mkt = coa.platform_fee_income(c, "CNY"), coa.platform_marketing_expense(c, "CNY")
        pend, settled = coa.merchant_pending_settlement(c, "m1", "CNY"), coa.merchant_settled(c, "m1", "CNY")
        bal, coins = coa.member_balance(c, "u1", "CNY"), coa.member_coins(c, "u1", "CNY")
        line, frozen = coa.member_credit(c, "u1", "CNY", credit_limit=300), coa.member_frozen(c, "u1", "CNY")
        ids = {k: v.account_id for k, v in locals().items() if hasattr(v, "account_id")}
        t = transfer
        t(c, ("payment", "p1", "collect"), ids["clr"], ids["pend"], 10_000)  # collect via channel
        t(c, ("topup", "t1", "credit"), ids["clr"], ids["bal"], 2_000)  # top-up
        t(c, ("coins", "g1", "grant"), ids["mkt"], ids["coins"], 500)  # marketing grant
        post_entry(c, ("payment", "p2", "collect"), [  # coins (<= 50%) + balance
            debit(ids["coins"], 400), debit(ids["bal"], 400), credit(ids["pend"], 800)])
        t(c, ("payment", "p3", "collect"), ids["line"], ids["pend"], 300)  # pay on credit, to the limit
        with pytest.raises(InsufficientFunds):
            t(c, ("payment", "p4", "collect"), ids["line"], ids["pend"], 1)
        t(c, ("refund", "r1", "refund"), ids["pend"], ids["clr"], 1_000)  # refund back through the channel
        t(c, ("withdrawal", "w1", "freeze"), ids["bal"], ids["frozen"], 1_000)  # withdrawal: freeze
        hold = reserve(c, ("withdrawal", "w1", "payout"), [debit(ids["frozen"], 1_000), credit(ids["clr"], 1_000)])
        post_hold(c, hold.hold_id)  # payout confirmed by the channel
        t(c, ("settlement", "s1", "fee"), ids["pend"], ids["fee"], 60)  # commission
        t(c, ("settlement", "s1", "settle"), ids["pend"], ids["settled"], 10_040)  # pending -> settled
        t(c, ("channel_bill", "b1", "funds"), ids["reserve_acc"], ids["clr"], 9_000)  # channel pays the platform
        t(c, ("payout", "s1", "merchant"), ids["settled"], ids["reserve_acc"], 10_040)  # pay the merchant out
        return ids

    ids = db.write(flows)
    with db.read() as c:
        assert balance(c, ids["pend"]).posted == 0
        assert balance(c, ids["settled"]).posted == 0
        assert balance(c, ids["bal"]).posted == 600
        assert balance(c, ids["coins"]).posted == 100
        assert balance(c, ids["frozen"]).posted == 0
        assert balance(c, ids["line"]).available == -300
        assert balance(c, ids["fee"]).posted == 60
    assert check(db) == []


def test_get_or_create_account_races(db):
    """Everyone asking for the same new account at once gets the same one."""
    barrier = threading.Barrier(8)

    def worker(_t: int) -> str:
        barrier.wait()
        return db.write(lambda c: coa.member_balance(c, "racer", "CNY")).account_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(worker, range(8)))
    assert len(set(ids)) == 1
    with db.read() as c:
        assert c.execute(select(func.count()).select_from(ledger_accounts)).scalar_one() == 1
