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


def test_paying_reads_the_channel_accounts_once_and_applies_the_notification_in_one_transaction(
        make_platform, receiver):
    running = make_platform(workers=False)  # the sandbox's notifier runs: it is the channel, not a worker
    m = running.merchant()
    trade = create(m, receiver)
    seen = Statements(running.platform.db.engine)

    seen.start()
    redirect_url = start(trade)
    pay_statements = seen.stop()
    assert sum("FROM channel_accounts" in s for s in pay_statements) == 1, pay_statements
    assert sum(s.startswith("SELECT trades.") for s in pay_statements) == 2  # the page's read, and the lock

    seen.start()
    succeed(redirect_url)
    assert wait_until(lambda: any(s.startswith("INSERT INTO channel_notifications") for s in seen.statements))
    wait_until(lambda: False, timeout_s=0.3)  # nothing more follows the record
    notify_statements, notify_commits = seen.stop(), seen.commits
    assert notify_commits == 1, notify_statements
    assert not any("FROM channel_accounts" in s for s in notify_statements)
    assert wait_status(m, trade, "succeeded")
