"""The ledger accounts a settlement credits are opened in a transaction of their own, before the one
that moves the money (docs/speed.md, Settlement): when the crediting transaction fails, no money
has moved, the accounts are there (empty), the books check clean, and the retry settles through the
same accounts without creating any. Through real HTTP and the periodic run, both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from piaohao.books import chart
from piaohao.books import settle as settle_book
from piaohao.clearing.batches import run_due
from piaohao.db.schema_ledger import ledger_accounts
from piaohao.kernel.clock import FakeClock
from piaohao.kernel.errors import SettlementVerificationFailed
from piaohao.services import settlement as settle_svc
from tests.settlement.helpers import balances, books_balance, create_trade, pay, receiver_id, seller


def _fail_once(monkeypatch) -> list:
    """The crediting transaction fails after posting (the entries' read-back raises), once."""
    calls, real = [], settle_book.verify_batch_entries

    def fail_first(conn, wants):
        calls.append(sorted(wants))
        if len(calls) == 1:
            raise SettlementVerificationFailed("injected: the crediting transaction fails")
        return real(conn, wants)

    monkeypatch.setattr(settle_book, "verify_batch_entries", fail_first)
    return calls


def _accounts(p) -> int:
    with p.db.read() as conn:
        return conn.execute(select(func.count()).select_from(ledger_accounts)).scalar_one()


def _receiver_account(p, receiver: str):
    with p.db.read() as conn:
        return chart.lookup(conn, "receiver_settled", receiver, "CNY")


def _paid_split_trade(running, m, days: int) -> tuple[str, str, dict]:
    s1, rcv = seller(running, m, days=days), receiver_id(m)
    trade = create_trade(m, 4000, [{"out_order_no": "O1", "sub_merchant_id": s1, "amount": 4000,
                                    "subsidy_amount": 500, "splits": [{"receiver_id": rcv, "amount": 600}]}]).json()
    pay(m, trade)
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 4000, "settled": 0}
    assert _receiver_account(running.platform, rcv) is None  # a new receiver: no account yet
    return s1, rcv, trade


@pytest.mark.parametrize("path", ["periodic run", "confirmation"])
def test_a_failed_crediting_transaction_moves_no_money_and_the_retry_uses_the_accounts_opened_before_it(
        make_platform, monkeypatch, path):
    clock = FakeClock(dt.datetime.now(dt.UTC))
    running = make_platform(clock=clock)
    p, m = running.platform, running.merchant()
    s1, rcv, trade = _paid_split_trade(running, m, days=1)
    calls = _fail_once(monkeypatch)

    def settle():
        if path == "periodic run":
            return run_due(p, clock.now() + dt.timedelta(days=2))["orders"]
        orders = settle_svc.confirm(p, m.merchant_id, trade["trade_no"], "S1", None)["orders"]
        return sum(o["status"] == "settled" for o in orders)

    with pytest.raises(SettlementVerificationFailed):
        settle()
    assert len(calls) == 1
    # Nothing of the page exists and no money moved, but the accounts it credits do, empty.
    assert m.call("GET", f"/v1/trades/{trade['trade_no']}").json()["orders"][0]["status"] == "pending_settlement"
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 4000, "settled": 0}
    assert balances(m, "split-receivers", rcv) == {"settled": 0}
    opened = _receiver_account(p, rcv)
    assert opened is not None
    with p.db.read() as conn:
        assert chart.lookup(conn, "sub_merchant_settled", s1, "CNY") is not None
        assert chart.lookup(conn, "platform_marketing_expense", chart.PLATFORM_OWNER_ID, "CNY") is not None
    books_balance(running)

    before = _accounts(p)
    assert settle() == 1
    assert len(calls) == 2
    assert _accounts(p) == before  # the retry created no account: it credited those opened before
    assert _receiver_account(p, rcv).account_id == opened.account_id
    assert balances(m, "split-receivers", rcv) == {"settled": 600}
    assert balances(m, "sub-merchants", s1) == {"pending_settlement": 0, "settled": 4000 + 500 - 600}
    books_balance(running)
