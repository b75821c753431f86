"""Balance constraints: non-negative, credit limit, limit changes; a refusal changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from piaohao.db.schema_ledger import ledger_entries
from piaohao.ledger.write import (
    AccountConflict,
    CreditLimitBelowUsed,
    InsufficientFunds,
    LedgerError,
    balance,
    check,
    get_account,
    get_or_create_account,
    reserve,
    set_credit_limit,
    transfer,
)
from tests.ledger.conftest import fund


def test_non_negative_refuses_overdraft(db, make_account):
    src, a, b = make_account("src", side="debit"), make_account("a", constraint="non_negative"), make_account("b")
    fund(db, src, a, 100, "1")
    db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, b.account_id, 100))
    with pytest.raises(InsufficientFunds) as info:
        db.write(lambda c: transfer(c, ("t", "2", "x"), a.account_id, b.account_id, 1))
    assert info.value.account_id == a.account_id and info.value.available == 0 and info.value.floor == 0
    with db.read() as c:
        assert balance(c, a.account_id).posted == 0


def test_refusal_leaves_caller_transaction_usable_and_unchanged(db, make_account):
    src, a, b = make_account("src", side="debit"), make_account("a", constraint="non_negative"), make_account("b")
    fund(db, src, a, 10, "1")

    def unit(c):
        transfer(c, ("t", "ok1", "x"), a.account_id, b.account_id, 4)
        with pytest.raises(InsufficientFunds):
            transfer(c, ("t", "too_much", "x"), a.account_id, b.account_id, 7)
        transfer(c, ("t", "ok2", "x"), a.account_id, b.account_id, 6)  # the caller carries on and commits

    db.write(unit)
    with db.read() as c:
        assert balance(c, a.account_id).posted == 0 and balance(c, b.account_id).posted == 10
        keys = set(c.execute(select(ledger_entries.c.source_id)).scalars())
    assert "too_much" not in keys
    assert check(db) == []
    # The refused key is free: the same key can be posted once funds arrive.
    fund(db, src, a, 7, "2")
    db.write(lambda c: transfer(c, ("t", "too_much", "x"), a.account_id, b.account_id, 7))


def test_credit_limit(db, make_account):
    src = make_account("src", side="debit")
    line = make_account("line", purpose="credit", constraint="credit_limit", credit_limit=500)
    shop = make_account("shop", owner_type="merchant", purpose="pending_settlement")
    db.write(lambda c: transfer(c, ("t", "1", "x"), line.account_id, shop.account_id, 400))
    with pytest.raises(InsufficientFunds) as info:
        db.write(lambda c: transfer(c, ("t", "2", "x"), line.account_id, shop.account_id, 101))
    assert info.value.floor == -500
    db.write(lambda c: transfer(c, ("t", "3", "x"), line.account_id, shop.account_id, 100))
    with db.read() as c:
        assert balance(c, line.account_id).available == -500
    # Raising the limit frees room; lowering below what is used is refused and changes nothing.
    db.write(lambda c: set_credit_limit(c, line.account_id, 800))
    db.write(lambda c: transfer(c, ("t", "4", "x"), line.account_id, shop.account_id, 100))
    with pytest.raises(CreditLimitBelowUsed):
        db.write(lambda c: set_credit_limit(c, line.account_id, 599))
    with db.read() as c:
        assert get_account(c, line.account_id).credit_limit == 800
    db.write(lambda c: set_credit_limit(c, line.account_id, 600))
    # Repayment (credit the line) then lowering works.
    db.write(lambda c: transfer(c, ("t", "5", "x"), src.account_id, line.account_id, 600))
    db.write(lambda c: set_credit_limit(c, line.account_id, 0))
    assert check(db) == []


def test_limit_counts_pending_holds(db, make_account):
    line = make_account("line", purpose="credit", constraint="credit_limit", credit_limit=300)
    shop = make_account("shop", owner_type="merchant", purpose="pending_settlement")
    db.write(lambda c: reserve(c, ("h", "1", "x"), [_leg(line, 250), _leg(shop, -250)]))
    with pytest.raises(CreditLimitBelowUsed):
        db.write(lambda c: set_credit_limit(c, line.account_id, 200))
    with pytest.raises(InsufficientFunds):
        db.write(lambda c: transfer(c, ("t", "1", "x"), line.account_id, shop.account_id, 51))


def _leg(account, amount):
    from piaohao.ledger import Leg

    return Leg(account.account_id, amount)


def test_set_credit_limit_only_on_credit_accounts(db, make_account):
    a = make_account("a", constraint="non_negative")
    with pytest.raises(LedgerError):
        db.write(lambda c: set_credit_limit(c, a.account_id, 10))


def test_get_or_create_is_idempotent_and_checks_shape(db, make_account):
    a = make_account("a", constraint="non_negative")
    assert make_account("a", constraint="non_negative").account_id == a.account_id
    with pytest.raises(AccountConflict):
        make_account("a", constraint="none")
    with pytest.raises(LedgerError):  # constrained accounts cannot be sharded
        make_account("b", constraint="non_negative", shard_count=4)
    with pytest.raises(LedgerError):
        db.write(lambda c: get_or_create_account(c, "member", "x", "balance", "cny", normal_side="credit"))
    with db.read() as c:
        from piaohao.db.schema_ledger import ledger_accounts

        assert c.execute(select(func.count()).select_from(ledger_accounts)).scalar_one() == 1
