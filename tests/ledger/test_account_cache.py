"""The natural-key cache behind `find_account` (every `books.chart` constructor): an account read
once is answered without a statement, but only once it is committed; a transaction that created
an account never caches it (it may still roll back), credit-limit accounts (whose `Account`
carries the limit) are never cached, and each engine (each database) has its own."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event

from piaohao.books import chart as coa
from piaohao.db.database import Database
from piaohao.ledger.write import find_account, set_credit_limit


class Statements:
    def __init__(self, engine):
        self.lock = threading.Lock()
        self.seen: list[str] = []
        event.listen(engine, "before_cursor_execute", self._one)

    def _one(self, _conn, _cursor, statement, *_args) -> None:
        with self.lock:
            if not statement.lstrip().upper().startswith("BEGIN"):
                self.seen.append(" ".join(statement.split()))

    def accounts_read(self) -> int:
        with self.lock:
            n = sum("FROM ledger_accounts" in s for s in self.seen)
            self.seen.clear()
            return n


def test_a_committed_account_is_read_once_then_answered_from_the_cache(db):
    made = db.write(lambda c: coa.merchant_pending_settlement(c, "m1", "CNY"))
    seen = Statements(db.engine)
    for _ in range(2):
        with db.read() as c:
            assert coa.lookup(c, "merchant_pending_settlement", "m1", "CNY") == made
        again = db.write(lambda c: coa.merchant_pending_settlement(c, "m1", "CNY"))
        assert again == made  # get, never create: the same account
    assert seen.accounts_read() == 1  # the first lookup only


def test_an_account_created_by_a_rolled_back_transaction_is_never_answered(db):
    class Boom(Exception):
        pass

    def create_then_fail(c):
        coa.merchant_pending_settlement(c, "m2", "CNY")
        # Found again in its own transaction (e.g. a second flow of the same unit): not committed, not cached.
        assert find_account(c, "merchant", "m2", "pending_settlement", "CNY") is not None
        raise Boom

    with pytest.raises(Boom):
        db.write(create_then_fail)
    with db.read() as c:
        assert coa.lookup(c, "merchant_pending_settlement", "m2", "CNY") is None
    made = db.write(lambda c: coa.merchant_pending_settlement(c, "m2", "CNY"))  # created afresh
    with db.read() as c:
        assert coa.lookup(c, "merchant_pending_settlement", "m2", "CNY") == made


def test_an_account_created_and_found_in_one_transaction_is_cached_only_after_a_later_read(db):
    def create_and_find(c):
        coa.member_balance(c, "u1", "CNY")
        return find_account(c, "member", "u1", "balance", "CNY")

    made = db.write(create_and_find)
    seen = Statements(db.engine)
    for _ in range(3):
        with db.read() as c:
            assert coa.lookup(c, "member_balance", "u1", "CNY") == made
    assert seen.accounts_read() == 1  # read once after the commit, then cached


def test_credit_limit_accounts_are_never_cached(db):
    line = db.write(lambda c: coa.member_credit(c, "u2", "CNY", credit_limit=5000))
    with db.read() as c:
        assert coa.lookup(c, "member_credit", "u2", "CNY").credit_limit == 5000
    db.write(lambda c: set_credit_limit(c, line.account_id, 7000))
    with db.read() as c:
        assert coa.lookup(c, "member_credit", "u2", "CNY").credit_limit == 7000
    assert db.write(lambda c: coa.member_credit(c, "u2", "CNY")).credit_limit == 7000


def test_each_database_has_its_own_cache(db, database_url):
    made = db.write(lambda c: coa.platform_suspense(c, "CNY"))
    with db.read() as c:
        assert coa.lookup(c, "platform_suspense", coa.PLATFORM_OWNER_ID, "CNY") == made  # cached now
    other = Database(database_url)  # another engine (as a fresh database would be): asks its database
    try:
        seen = Statements(other.engine)
        with other.read() as c:
            assert coa.lookup(c, "platform_suspense", coa.PLATFORM_OWNER_ID, "CNY") == made
        assert seen.accounts_read() == 1
    finally:
        other.dispose()
