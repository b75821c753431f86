"""Two-phase entries: reserve, post, void, expire; idempotency and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from piaohao.ledger.write import (
    Balance,
    EntryKeyConflict,
    HoldNotFound,
    HoldNotPending,
    InsufficientFunds,
    balance,
    check,
    credit,
    debit,
    get_hold,
    post_hold,
    reserve,
    statement,
    transfer,
    void_expired_holds,
    void_hold,
)
from tests.ledger.conftest import fund

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture
def wallet(db, make_account):
    """A member balance (non-negative, 1000 in it) and the payout clearing account."""
    src = make_account("src", side="debit", owner_type="platform", purpose="reserve")
    member = make_account("m1", constraint="non_negative")
    clearing = make_account("sandbox", side="debit", owner_type="channel", purpose="clearing")
    fund(db, src, member, 1000, "seed")
    return member, clearing


def _hold(db, member, clearing, amount, sid, **kw):
    return db.write(lambda c: reserve(c, ("withdrawal", sid, "freeze"),
                                      [debit(member.account_id, amount), credit(clearing.account_id, amount)], **kw))


def _bal(db, account) -> Balance:
    with db.read() as c:
        return balance(c, account.account_id)


def test_reserve_counts_against_available(db, wallet):
    member, clearing = wallet
    hold = _hold(db, member, clearing, 600, "w1")
    assert hold.status == "pending"
    assert _bal(db, member) == Balance(posted=1000, pending_debits=600, pending_credits=0, available=400)
    assert _bal(db, clearing) == Balance(posted=0, pending_debits=0, pending_credits=600, available=-600)
    with pytest.raises(InsufficientFunds):
        _hold(db, member, clearing, 401, "w2")
    with pytest.raises(InsufficientFunds):
        db.write(lambda c: transfer(c, ("t", "1", "x"), member.account_id, clearing.account_id, 401))
    assert check(db) == []


def test_post_hold_and_idempotency(db, wallet):
    member, clearing = wallet
    hold = _hold(db, member, clearing, 600, "w1")
    assert _hold(db, member, clearing, 600, "w1").hold_id == hold.hold_id  # replayed reserve
    with pytest.raises(EntryKeyConflict):
        _hold(db, member, clearing, 601, "w1")
    entry = db.write(lambda c: post_hold(c, hold.hold_id))
    again = db.write(lambda c: post_hold(c, hold.hold_id))
    assert again.entry_id == entry.entry_id and again.replayed
    assert _bal(db, member) == Balance(400, 0, 0, 400)
    assert _bal(db, clearing) == Balance(-600, 0, 0, -600)
    with pytest.raises(HoldNotPending):
        db.write(lambda c: void_hold(c, hold.hold_id))
    with db.read() as c:
        assert get_hold(c, hold.hold_id).resolved_entry_id == entry.entry_id
        lines = statement(c, member.account_id).lines
    assert [ln.change for ln in lines] == [1000, -600]
    assert check(db) == []


def test_void_hold_and_idempotency(db, wallet):
    member, clearing = wallet
    hold = _hold(db, member, clearing, 600, "w1")
    voided = db.write(lambda c: void_hold(c, hold.hold_id))
    assert voided.status == "voided"
    assert db.write(lambda c: void_hold(c, hold.hold_id)).status == "voided"
    assert _bal(db, member) == Balance(1000, 0, 0, 1000)
    with pytest.raises(HoldNotPending):
        db.write(lambda c: post_hold(c, hold.hold_id))
    with pytest.raises(HoldNotFound):
        db.write(lambda c: post_hold(c, "je_nope"))
    assert check(db) == []


def test_expiry_sweep(db, wallet):
    member, clearing = wallet
    short = _hold(db, member, clearing, 100, "w1", expires_at=T0 + timedelta(minutes=5), at=T0)
    long = _hold(db, member, clearing, 200, "w2", expires_at=T0 + timedelta(hours=1), at=T0)
    forever = _hold(db, member, clearing, 300, "w3", at=T0)
    assert void_expired_holds(db, T0 + timedelta(minutes=4)) == 0
    # Past its expiry a hold cannot be posted, even before the sweep runs.
    with pytest.raises(HoldNotPending):
        db.write(lambda c: post_hold(c, short.hold_id, at=T0 + timedelta(minutes=6)))
    assert void_expired_holds(db, T0 + timedelta(minutes=6)) == 1
    assert db.write(lambda c: void_expired_holds(c, T0 + timedelta(days=1))) == 1
    with db.read() as c:
        assert get_hold(c, short.hold_id).status == "expired"
        assert get_hold(c, long.hold_id).status == "expired"
        assert get_hold(c, forever.hold_id).status == "pending"
    with pytest.raises(HoldNotPending):
        db.write(lambda c: post_hold(c, long.hold_id))
    assert _bal(db, member) == Balance(1000, 300, 0, 700)
    assert check(db) == []


def test_sweep_in_batches(db, wallet):
    member, clearing = wallet
    for i in range(7):
        _hold(db, member, clearing, 10, f"w{i}", expires_at=T0, at=T0 - timedelta(minutes=1))
    assert void_expired_holds(db, T0, batch_size=3) == 7
    assert _bal(db, member) == Balance(1000, 0, 0, 1000)
    assert check(db) == []
