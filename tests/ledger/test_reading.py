"""Balances and statements, including a hot (sharded) account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from piaohao.books.chart import (
    channel_clearing,
    merchant_pending_settlement,
    merchant_settled,
    platform_fee_income,
)
from piaohao.ledger.write import balance, check, statement, transfer

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def test_statement_running_balance_and_window(db):
    def setup(c):
        return (channel_clearing(c, "sandbox", "CNY"), merchant_pending_settlement(c, "m1", "CNY"),
                merchant_settled(c, "m1", "CNY"), platform_fee_income(c, "CNY"))

    clearing, pending, settled, fee = db.write(setup)
    moves = [(clearing, pending, 1000), (clearing, pending, 500), (pending, settled, 1200), (pending, fee, 30),
             (clearing, pending, 70)]
    for i, (dr, cr, amount) in enumerate(moves):
        db.write(lambda c, dr=dr, cr=cr, amount=amount, i=i: transfer(
            c, ("pay", str(i), "x"), dr.account_id, cr.account_id, amount, at=T0 + timedelta(hours=i)))
    with db.read() as c:
        full = statement(c, pending.account_id)
        window = statement(c, pending.account_id, T0 + timedelta(hours=1), T0 + timedelta(hours=4))
        hot = balance(c, clearing.account_id)
        assert balance(c, pending.account_id).posted == 340
    assert [ln.running_balance for ln in full.lines] == [1000, 1500, 300, 270, 340]
    assert [(ln.debit, ln.credit) for ln in full.lines] == [(0, 1000), (0, 500), (1200, 0), (30, 0), (0, 70)]
    assert full.opening_balance == 0 and full.closing_balance == 340
    assert window.opening_balance == 1000
    assert [ln.running_balance for ln in window.lines] == [1500, 300, 270]
    assert hot.posted == 1570  # summed over the clearing account's shards
    assert check(db) == []
