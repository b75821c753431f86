"""Entries: validation, balance per currency, idempotent replay, batches."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from piaohao.db.schema_ledger import ledger_entries, ledger_legs
from piaohao.ledger.write import (
    AccountNotFound,
    EntryKey,
    EntryKeyConflict,
    InvalidLeg,
    Leg,
    NewEntry,
    UnbalancedEntry,
    balance,
    check,
    credit,
    debit,
    get_entry,
    post_entries,
    post_entry,
    transfer,
)


def _count(db, table) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_unbalanced_entry_refused_and_nothing_written(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    with pytest.raises(UnbalancedEntry):
        db.write(lambda c: post_entry(c, ("t", "1", "x"), [Leg(a.account_id, 100), Leg(b.account_id, -99)]))
    with pytest.raises(UnbalancedEntry):
        db.write(lambda c: post_entry(c, ("t", "1", "x"), [Leg(a.account_id, 100)]))
    assert _count(db, ledger_entries) == 0


@pytest.mark.parametrize("amount", [0, 1.5, True, "10", 10**15 + 1, -(10**15) - 1, None])
def test_leg_validation(db, make_account, amount):
    a, b = make_account("a", side="debit"), make_account("b")
    with pytest.raises(InvalidLeg):
        db.write(lambda c: post_entry(c, ("t", "1", "x"), [Leg(a.account_id, amount), Leg(b.account_id, 1)]))
    with pytest.raises(InvalidLeg):
        debit(a.account_id, amount)


def test_largest_amount_accepted_and_key_validated(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, b.account_id, 10**15))
    with db.read() as c:
        assert balance(c, b.account_id).posted == 10**15
        assert balance(c, a.account_id).posted == 10**15
    with pytest.raises(InvalidLeg):
        EntryKey("t", "", "x")
    with pytest.raises(InvalidLeg):
        transfer(None, ("t", "2", "x"), a.account_id, b.account_id, -5)


def test_unknown_account_and_currency_mix(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    usd = make_account("u", currency="USD")
    with pytest.raises(AccountNotFound):
        db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, "acc_nope", 5))
    with pytest.raises(UnbalancedEntry):  # 5 CNY against 5 USD sums to zero in neither currency
        db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, usd.account_id, 5))
    # Balanced in each currency: fine (an FX entry through two clearing accounts).
    a_usd = make_account("a", side="debit", currency="USD")
    db.write(lambda c: post_entry(c, ("fx", "1", "x"), [
        debit(a.account_id, 700), credit(b.account_id, 700), debit(a_usd.account_id, 100),
        credit(usd.account_id, 100)]))
    assert check(db) == []


def test_idempotent_replay_returns_original_and_changes_nothing(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    legs = [debit(a.account_id, 250), credit(b.account_id, 250)]
    first = db.write(lambda c: post_entry(c, ("payment", "p1", "collect"), legs, description="first"))
    again = db.write(lambda c: post_entry(c, EntryKey("payment", "p1", "collect"), list(reversed(legs))))
    assert again.replayed and not first.replayed
    assert again.entry_id == first.entry_id and again.description == "first"
    assert _count(db, ledger_entries) == 1 and _count(db, ledger_legs) == 2
    with db.read() as c:
        assert balance(c, b.account_id).posted == 250
        assert get_entry(c, ("payment", "p1", "collect")).entry_id == first.entry_id


def test_replay_with_different_legs_refused(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    db.write(lambda c: transfer(c, ("payment", "p1", "collect"), a.account_id, b.account_id, 250))
    with pytest.raises(EntryKeyConflict):
        db.write(lambda c: transfer(c, ("payment", "p1", "collect"), a.account_id, b.account_id, 251))
    with db.read() as c:
        assert balance(c, b.account_id).posted == 250


def test_batch_posts_all_and_replays_per_entry(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b")
    batch = [NewEntry(EntryKey("batch", str(i), "x"), [debit(a.account_id, i + 1), credit(b.account_id, i + 1)])
             for i in range(50)]
    entries = db.write(lambda c: post_entries(c, batch))
    assert [e.key for e in entries] == [n.key for n in batch] and not any(e.replayed for e in entries)
    more = batch[:10] + [NewEntry(EntryKey("batch", "new", "x"), [debit(a.account_id, 5), credit(b.account_id, 5)])]
    again = db.write(lambda c: post_entries(c, more))
    assert [e.replayed for e in again] == [True] * 10 + [False]
    with db.read() as c:
        assert balance(c, b.account_id).posted == sum(range(1, 51)) + 5
    assert check(db) == []


def test_batch_is_all_or_nothing(db, make_account):
    a, b = make_account("a", side="debit"), make_account("b", constraint="non_negative")
    ok = NewEntry(EntryKey("batch", "1", "x"), [debit(a.account_id, 5), credit(b.account_id, 5)])
    bad = NewEntry(EntryKey("batch", "2", "x"), [debit(b.account_id, 50), credit(a.account_id, 50)])
    from piaohao.ledger import InsufficientFunds

    with pytest.raises(InsufficientFunds):
        db.write(lambda c: post_entries(c, [ok, bad]))
    dup = NewEntry(EntryKey("batch", "1", "x"), [debit(a.account_id, 6), credit(b.account_id, 6)])
    with pytest.raises(EntryKeyConflict):
        db.write(lambda c: post_entries(c, [ok, dup]))
    assert _count(db, ledger_entries) == 0


def test_naive_times_refused(db, make_account):
    from datetime import datetime

    from piaohao.ledger import LedgerError

    a, b = make_account("a", side="debit"), make_account("b")
    with pytest.raises(LedgerError):
        db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, b.account_id, 5, at=datetime(2026, 1, 1)))


AWKWARD_TEXTS = ["plain", "a,b", 'say "hi"', "back\\slash", "{braces}", "NULL", "null", " padded ", "tab\there",
                 "line\nbreak", "中文 描述", ""]


def test_batch_keeps_any_key_and_description_text_exactly(db, make_account):
    # On PostgreSQL a batch travels as array literals: a comma, quote, brace, backslash, blank, the
    # word NULL or an empty string in a key or a description must come back exactly as given.
    a, b = make_account("a", side="debit"), make_account("b")
    batch = [NewEntry(EntryKey("awkward", f"id {i} {text}".strip() or "x", "op,x"),
                      [debit(a.account_id, i + 1), credit(b.account_id, i + 1)],
                      description=text if i % 3 else None)
             for i, text in enumerate(AWKWARD_TEXTS)]
    db.write(lambda c: post_entries(c, batch))
    with db.read() as c:
        for n in batch:
            got = get_entry(c, n.key)
            assert (got.key, got.description) == (n.key, n.description)
    assert check(db) == []
