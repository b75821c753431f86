"""Refunds of trades funded by several components (channel + balance / credit / coins).

The cashier's combinations write these component rows; here they are inserted directly over a
trade paid through the sandbox, so the refund rules are tested on their own."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from piaohao.books import chart
from piaohao.db.schema import trade_components
from piaohao.db.schema_refunds import refunds
from piaohao.ledger import write as ledger
from tests.refunds.helpers import (
    alert_count,
    available,
    books_balance,
    paid_trade,
    posted,
    refund,
    refund_rows,
    trade_of,
    wait_refund,
)
from tests.support.merchant import wait_until

MEMBER = "mem_test0000000000000000"


def fund_with(running, trade, channel_amount: int, internal: dict[str, int]) -> None:
    """Rewrite the trade's components: the channel part paid `channel_amount`, the member's
    methods paid the rest (as a combination would have recorded them)."""
    now = running.platform.clock.now()
    c = trade_components.c

    def tx(conn):
        conn.execute(update(trade_components).where(c.trade_no == trade["trade_no"], c.kind == "channel").values(
            amount=channel_amount))
        for method, amount in internal.items():
            conn.execute(insert(trade_components).values(
                trade_no=trade["trade_no"], attempt="direct", method=method, kind="internal", amount=amount,
                refunded_amount=0, status="paid", payment_no=None, hold_id=None, member_id=MEMBER,
                created_at=now, updated_at=now))

    running.platform.db.write(tx)
    assert channel_amount + sum(internal.values()) == trade["amount"]


def member_posted(running, method: str) -> int:
    return posted(running, f"member_{method}", MEMBER)


def components(m, trade) -> dict[str, tuple[int, int]]:
    return {c["method"]: (c["amount"], c["refunded_amount"]) for c in trade_of(m, trade)["components"]}


def test_coins_and_channel_refunded_in_three_parts_channel_first_coins_last(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    fund_with(running, trade, 70, {"coins": 30})
    first = refund(m, trade, "R1", 50).json()
    assert first["components"] == [{"method": "sandbox", "amount": 50}]
    assert wait_refund(m, first["refund_no"], "succeeded")
    second = refund(m, trade, "R2", 30).json()
    assert second["components"] == [{"method": "sandbox", "amount": 20}, {"method": "coins", "amount": 10}]
    assert wait_refund(m, second["refund_no"], "succeeded")
    third = refund(m, trade, "R3", 20)
    assert third.status_code == 201
    # Internal components only: final at once, in the creating transaction.
    assert third.json()["status"] == "succeeded"
    assert third.json()["components"] == [{"method": "coins", "amount": 20}]
    assert components(m, trade) == {"sandbox": (70, 70), "coins": (30, 30)}
    assert member_posted(running, "coins") == 30
    assert wait_until(lambda: trade_of(m, trade)["status"] == "refunded")
    over = refund(m, trade, "R4", 1)
    assert over.status_code == 409 and over.json()["code"] == "REFUND_AMOUNT_EXCEEDED"
    assert posted(running, "merchant_pending_settlement", m.merchant_id) == 0
    assert books_balance(running) == []


def test_every_method_in_the_fixed_order_and_a_full_refund_returns_each_in_full(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    fund_with(running, trade, 40, {"coins": 25, "credit": 15, "balance": 20})
    r = refund(m, trade, "R1", 55).json()
    assert r["components"] == [{"method": "sandbox", "amount": 40}, {"method": "balance", "amount": 15}]
    assert wait_refund(m, r["refund_no"], "succeeded")
    r = refund(m, trade, "R2", 45).json()
    assert r["status"] == "succeeded"
    assert r["components"] == [{"method": "balance", "amount": 5}, {"method": "credit", "amount": 15},
                               {"method": "coins", "amount": 25}]
    assert components(m, trade) == {"sandbox": (40, 40), "balance": (20, 20), "credit": (15, 15),
                                    "coins": (25, 25)}
    assert (member_posted(running, "balance"), member_posted(running, "credit"),
            member_posted(running, "coins")) == (20, 15, 25)
    assert books_balance(running) == []


def test_a_mixed_refund_is_all_or_nothing(running, receiver):
    """The channel refuses the channel part: the coins part, only held meanwhile, never reaches
    the member, and both components are refundable again."""
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    fund_with(running, trade, 70, {"coins": 30})
    running.assembly.sandbox_service.set_fault("refund", "fail", count=1)
    r = refund(m, trade, "R1", 100).json()
    assert r["status"] == "failed"
    assert r["components"] == [{"method": "sandbox", "amount": 70}, {"method": "coins", "amount": 30}]
    assert member_posted(running, "coins") == 0 and available(running, "member_coins", MEMBER) == 0
    assert components(m, trade) == {"sandbox": (70, 0), "coins": (30, 0)}
    assert alert_count(running, "refund_failed") == 1
    ok = refund(m, trade, "R2", 100).json()
    assert wait_refund(m, ok["refund_no"], "succeeded")
    assert member_posted(running, "coins") == 30
    assert books_balance(running) == []


def test_the_coins_part_reaches_the_member_only_when_the_channel_part_succeeds(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    fund_with(running, trade, 70, {"coins": 30})
    running.assembly.sandbox_service.set_fault("refund", "error")
    r = refund(m, trade, "R1", 100).json()
    assert r["status"] == "processing"
    assert available(running, "member_coins", MEMBER) == 0  # not spendable while in doubt
    assert available(running, "merchant_pending_settlement", m.merchant_id) == 0  # held for the refund
    running.assembly.sandbox_service.clear_faults()
    assert wait_refund(m, r["refund_no"], "succeeded")
    assert available(running, "member_coins", MEMBER) == 30
    assert books_balance(running) == []


def _move(running, m, from_name: str, to_account_id: str, amount: int) -> None:
    def tx(conn):
        source = chart.standard_account(conn, from_name, m.merchant_id, "CNY")
        ledger.transfer(conn, ("test", source.account_id, f"move:{to_account_id}"), source.account_id,
                        to_account_id, amount)
    running.platform.db.write(tx)


def test_after_settlement_the_refund_comes_from_settled_money_and_never_overdraws(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    with running.platform.db.read() as conn:
        settled = chart.lookup(conn, "merchant_settled", m.merchant_id, "CNY")
    if settled is None:
        running.platform.db.write(lambda conn: chart.merchant_settled(conn, m.merchant_id, "CNY"))
        with running.platform.db.read() as conn:
            settled = chart.lookup(conn, "merchant_settled", m.merchant_id, "CNY")
    _move(running, m, "merchant_pending_settlement", settled.account_id, 100)  # as settlement would
    r = refund(m, trade, "R1", 40).json()
    assert wait_refund(m, r["refund_no"], "succeeded")
    assert posted(running, "merchant_settled", m.merchant_id) == 60
    # The merchant pays the rest out: nothing is left to refund from.
    reserve = running.platform.db.write(lambda conn: chart.platform_reserve(conn, "CNY").account_id)
    _move(running, m, "merchant_settled", reserve, 60)
    refused = refund(m, trade, "R2", 10)
    assert refused.status_code == 409 and refused.json()["code"] == "INSUFFICIENT_BALANCE", refused.text
    assert trade_of(m, trade)["refunded_amount"] == 40
    assert len(refund_rows(running, refunds.c.trade_no == trade["trade_no"])) == 1
    assert books_balance(running) == []


def test_component_rows_never_go_over_what_they_paid(running, receiver):
    m = running.merchant()
    trade = paid_trade(m, receiver, amount=100)
    fund_with(running, trade, 60, {"coins": 40})
    for i, amount in enumerate((33, 33, 33)):
        assert refund(m, trade, f"R{i}", amount).status_code == 201
    with running.platform.db.read() as conn:
        rows = conn.execute(select(trade_components).where(
            trade_components.c.trade_no == trade["trade_no"])).mappings().all()
    assert all(0 <= r["refunded_amount"] <= r["amount"] for r in rows)
    assert sum(r["refunded_amount"] for r in rows) == 99
