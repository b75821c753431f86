"""Ledger fixtures: a migrated database on each backend (the shared `database_url` fixture)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from piaohao.db import migrate
from piaohao.db.database import Database
from piaohao.ledger.write import Account, Constraint, NormalSide, get_or_create_account


@pytest.fixture
def db(database_url) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


MakeAccount = Callable[..., Account]


@pytest.fixture
def make_account(db) -> MakeAccount:
    """make_account(name, side="credit", constraint="none", currency="CNY", **kw) in its own transaction."""

    def make(name: str, side: str = "credit", constraint: str = "none", currency: str = "CNY", **kw) -> Account:
        owner_type = kw.pop("owner_type", "member")
        return db.write(lambda conn: get_or_create_account(
            conn, owner_type, name, kw.pop("purpose", "balance"), currency, normal_side=NormalSide(side),
            constraint=Constraint(constraint), **kw))

    return make


def fund(db: Database, source: Account, target: Account, amount: int, op: str) -> None:
    """Move `amount` from an unconstrained source to `target` (debit source, credit target)."""
    from piaohao.ledger.write import transfer

    db.write(lambda conn: transfer(conn, ("test_fund", target.account_id, op), source.account_id,
                                   target.account_id, amount))
