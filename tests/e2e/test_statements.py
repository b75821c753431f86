"""What one payment asks of the database (issue 12): the cashier's pay reads the merchant's channel
accounts once, and a channel's payment notification is applied in one transaction. Counted with
SQLAlchemy's engine events on the platform's own engine (bench/e2e/statements.py prints the whole
table); the workers do not run, so nothing else uses the engine meanwhile. SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import event

from tests.e2e.test_payments import create, start, succeed, wait_status
from tests.support.merchant import wait_until


class Statements:
    """The statements and commits on one engine while `counting` is set."""

    def __init__(self, engine):
        self.lock = threading.Lock()
        self.counting = False
        self.statements: list[str] = []
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _conn, _cursor, statement, *_args) -> None:
        with self.lock:
            if self.counting and not statement.lstrip().upper().startswith("BEGIN"):
                self.statements.append(" ".join(statement.split()))

    def _commit(self, _conn) -> None:
        with self.lock:
            self.commits += self.counting

    def start(self) -> None:
        with self.lock:
            self.counting, self.statements, self.commits = True, [], 0

    def stop(self) -> list[str]:
        with self.lock:
            self.counting = False
            return list(self.statements)


# One steady payment's statements (the platform warm: the ledger accounts it posts to known), on
# (SQLite, PostgreSQL): SQLite posts an entry in three statements (entry, legs, balances), PostgreSQL
# in one. Lower these when a statement is cut; a count that goes up fails here. The payment's
# success: the payment (marked succeeded, no read before), the trade (locked read carrying
# clearing's facts, its parts, the channel part, update), the posting, the own-sale row, the
# event, the notification's record.
PAY_STATEMENTS = 6
NOTIFY_STATEMENTS = {"sqlite": 11, "postgresql": 9}


def _pay(seen: Statements, m, receiver, out_trade_no: str) -> tuple[list[str], list[str], int]:
    trade = create(m, receiver, out_trade_no)
    seen.start()
    redirect_url = start(trade)
    pay_statements = seen.stop()
    seen.start()
    succeed(redirect_url)
    assert wait_until(lambda: any(s.startswith("INSERT INTO channel_notifications") for s in seen.statements))
    wait_until(lambda: False, timeout_s=0.3)  # nothing more follows the record
    notify_statements, notify_commits = seen.stop(), seen.commits
    assert wait_status(m, trade, "succeeded")
    return pay_statements, notify_statements, notify_commits


def test_paying_reads_the_channel_accounts_once_and_applies_the_notification_in_one_transaction(
        make_platform, receiver):
    running = make_platform(workers=False)  # the sandbox's notifier runs: it is the channel, not a worker
    m = running.merchant()
    seen = Statements(running.platform.db.engine)
    backend = "sqlite" if running.platform.db.is_sqlite else "postgresql"

    # The first payment creates the ledger accounts it posts to; the second reads them (committed
    # now, so cached); from the third on, a payment is what every later one costs.
    for out_trade_no in ("S1", "S2", "S3"):
        pay_statements, notify_statements, notify_commits = _pay(seen, m, receiver, out_trade_no)
        assert sum("FROM channel_accounts" in s for s in pay_statements) == 1, pay_statements
        assert sum(s.startswith("SELECT trades.") for s in pay_statements) == 2  # the page's read, and the lock
        assert notify_commits == 1, notify_statements
        assert not any("FROM channel_accounts" in s for s in notify_statements)
        # Clearing's facts ride with the trade's lock; the event is given the orders (none).
        assert not any("FROM merchants" in s and not s.startswith("SELECT trades.") for s in notify_statements)
        assert not any(s.startswith("SELECT trade_orders.") for s in notify_statements), notify_statements
    assert len(pay_statements) == PAY_STATEMENTS, pay_statements
    assert not any("FROM ledger_accounts" in s for s in notify_statements), notify_statements
    assert not any(s.startswith("SELECT payments.") for s in notify_statements), notify_statements
    assert len(notify_statements) == NOTIFY_STATEMENTS[backend], notify_statements
