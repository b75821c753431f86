"""Concurrency on PostgreSQL: many writers on the same rows (SQLite has one writer, so it is skipped)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from piaohao.books.chart import channel_clearing, member_balance, platform_marketing_expense, platform_reserve
from piaohao.db import migrate
from piaohao.db.database import Database
from piaohao.db.schema_ledger import ledger_entries
from piaohao.ledger.write import (
    HoldNotPending,
    InsufficientFunds,
    balance,
    check,
    credit,
    debit,
    get_hold,
    post_entry,
    post_hold,
    reserve,
    transfer,
    void_hold,
)

pytestmark = pytest.mark.postgres_only

THREADS = 32
TRANSFERS_PER_THREAD = 25
SEED_MINOR = 1_000


@pytest.fixture
def pg_db(database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    db = Database(database_url, pool_size=THREADS)
    migrate.upgrade(db)
    yield db
    db.dispose()


def _run_all(fn, n: int) -> list:
    barrier = threading.Barrier(n)

    def start(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


def test_32_threads_on_4_accounts_conserve_money(pg_db):
    db = pg_db

    def setup(c):
        src = platform_reserve(c, "CNY")
        members = [member_balance(c, f"u{i}", "CNY") for i in range(4)]
        for m in members:
            transfer(c, ("seed", m.account_id, "x"), src.account_id, m.account_id, SEED_MINOR)
        return [m.account_id for m in members]

    ids = db.write(setup)
    total = SEED_MINOR * len(ids)

    def worker(t: int) -> Counter:
        rng = random.Random(t)
        seen: Counter = Counter()
        for i in range(TRANSFERS_PER_THREAD):
            a, b = rng.sample(ids, 2)
            overdraw = i % 5 == 0  # more than all the money there is: must always be refused
            amount = total + 1 if overdraw else rng.randint(1, 400)
            try:
                db.write(lambda c, a=a, b=b, amount=amount, i=i: transfer(c, ("mv", f"{t}-{i}", "x"), a, b, amount))
                assert not overdraw, "an overdraw went through"
                seen["ok"] += 1
            except InsufficientFunds:
                seen["overdraw_refused" if overdraw else "refused"] += 1
        return seen

    results = sum(_run_all(worker, THREADS), Counter())
    assert results["overdraw_refused"] == THREADS * TRANSFERS_PER_THREAD // 5
    assert results["ok"] + results["refused"] + results["overdraw_refused"] == THREADS * TRANSFERS_PER_THREAD
    with db.read() as c:
        balances = [balance(c, i) for i in ids]
        moved = c.execute(select(func.count()).select_from(ledger_entries)
                          .where(ledger_entries.c.source_type == "mv")).scalar_one()
    assert sum(b.posted for b in balances) == total
    assert all(b.posted >= 0 and b.available >= 0 for b in balances)
    assert moved == results["ok"]
    assert check(db) == []


def test_16_threads_crediting_one_hot_account(pg_db):
    db = pg_db
    per_thread, amount = 40, 7

    def setup(c):
        hot = channel_clearing(c, "sandbox", "CNY")
        sources = [member_balance(c, f"s{i}", "CNY") for i in range(16)]
        mkt = platform_marketing_expense(c, "CNY")
        for s in sources:
            transfer(c, ("seed", s.account_id, "x"), mkt.account_id, s.account_id, per_thread * amount)
        return hot.account_id, [s.account_id for s in sources]

    hot, sources = db.write(setup)

    def worker(t: int) -> int:
        for i in range(per_thread):
            db.write(lambda c, i=i: post_entry(c, ("hot", f"{t}-{i}", "x"),
                                               [debit(sources[t], amount), credit(hot, amount)]))
        return per_thread

    assert sum(_run_all(worker, 16)) == 16 * per_thread
    with db.read() as c:
        assert balance(c, hot).posted == -16 * per_thread * amount  # debit-normal, credited
        assert all(balance(c, s).posted == 0 for s in sources)
    assert check(db) == []


def test_racing_post_and_void_of_one_hold(pg_db):
    """Posts and voids of the same holds at once: per hold, one side wins and the other is refused."""
    db = pg_db

    def setup(c):
        src = platform_reserve(c, "CNY")
        member, clearing = member_balance(c, "u", "CNY"), channel_clearing(c, "sandbox", "CNY")
        transfer(c, ("seed", "u", "x"), src.account_id, member.account_id, 10_000)
        return [reserve(c, ("withdrawal", str(i), "freeze"), [debit(member.account_id, 100),
                                                               credit(clearing.account_id, 100)]).hold_id
                for i in range(10)], member.account_id

    holds, member = db.write(setup)

    def worker(t: int) -> list[str]:
        outcomes = []
        for hold_id in holds:
            try:
                if t % 2:
                    db.write(lambda c, h=hold_id: post_hold(c, h))
                    outcomes.append("posted")
                else:
                    db.write(lambda c, h=hold_id: void_hold(c, h))
                    outcomes.append("voided")
            except HoldNotPending:
                outcomes.append("refused")
        return outcomes

    per_thread = _run_all(worker, 8)
    with db.read() as c:
        statuses = [get_hold(c, h).status for h in holds]
        b = balance(c, member)
    for i, status in enumerate(statuses):
        column = [per_thread[t][i] for t in range(8)]
        assert status in ("posted", "voided")
        assert all(o in (status, "refused") for o in column)  # the losing side was refused, every time
    assert b.pending_debits == 0 and b.posted == 10_000 - 100 * statuses.count("posted")
    assert check(db) == []
