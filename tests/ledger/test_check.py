"""`check` passes on clean books and finds injected corruption; the CLI's exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from piaohao.cli.ledger import app
from piaohao.ledger.write import check, credit, debit, reserve, transfer
from tests.ledger.conftest import fund


@pytest.fixture
def books(db, make_account):
    src = make_account("src", side="debit", owner_type="platform", purpose="reserve")
    a = make_account("a", constraint="non_negative")
    b = make_account("b", constraint="non_negative")
    hot = make_account("sandbox", side="debit", owner_type="channel", purpose="clearing", shard_count=4)
    fund(db, src, a, 1000, "1")
    db.write(lambda c: transfer(c, ("t", "1", "x"), a.account_id, b.account_id, 300))
    db.write(lambda c: reserve(c, ("h", "1", "x"), [debit(b.account_id, 100), credit(hot.account_id, 100)]))
    for i in range(8):
        db.write(lambda c, i=i: transfer(c, ("p", str(i), "x"), hot.account_id, a.account_id, 10))
    return src, a, b, hot


def _raw(db, sql: str, **params) -> None:
    db.write(lambda c: c.execute(text(sql), params))


def test_clean_books_pass(db, books):
    assert check(db) == []
    with db.read() as conn:
        assert check(conn) == []


def test_altered_balance_row_found(db, books):
    _, a, _, _ = books
    _raw(db, "UPDATE ledger_balances SET posted = posted + 1, available = available + 1 WHERE account_id = :a",
         a=a.account_id)
    kinds = {v.kind for v in check(db)}
    assert "balance_mismatch" in kinds and "books_unbalanced_balances" in kinds


def test_altered_pending_found(db, books):
    _, _, b, _ = books
    _raw(db, "UPDATE ledger_balances SET pending_debits = 0 WHERE account_id = :b", b=b.account_id)
    assert {v.kind for v in check(db)} >= {"balance_mismatch"}


def test_leg_that_unbalances_an_entry_found(db, books):
    _, a, _, _ = books
    _raw(db, "INSERT INTO ledger_legs (entry_id, account_id, shard, amount, currency, is_pending, created_at) "
             "SELECT entry_id, :a, 0, 5, 'CNY', :f, created_at FROM ledger_entries WHERE source_id = '1' "
             "AND source_type = 't'", a=a.account_id, f=False)
    violations = check(db)
    kinds = {v.kind for v in violations}
    assert {"entry_unbalanced", "books_unbalanced_legs", "balance_mismatch"} <= kinds
    assert any("sum to 5" in v.message for v in violations)


def test_floor_not_matching_constraint_found(db, books):
    _, a, _, _ = books
    _raw(db, "UPDATE ledger_balances SET available_floor = -50 WHERE account_id = :a", a=a.account_id)
    assert "floor_mismatch" in {v.kind for v in check(db)}


def test_account_below_floor_found(db, books):
    _, a, _, _ = books
    # The CHECK constraint on ledger_balances would refuse this write; switch it off to play a bug
    # (or a hand edit) that got past it, and make sure `check` still sees it.
    if db.is_sqlite:
        def corrupt(c):
            c.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
            c.execute(text("UPDATE ledger_balances SET posted = -5, available = -5 WHERE account_id = :a"),
                      {"a": a.account_id})
            c.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")
        db.write(corrupt)
    else:
        _raw(db, "ALTER TABLE ledger_balances DROP CONSTRAINT ck_ledger_balances_available_floor")
        _raw(db, "UPDATE ledger_balances SET posted = -5, available = -5 WHERE account_id = :a", a=a.account_id)
    violations = check(db)
    assert "below_floor" in {v.kind for v in violations}
    assert any(v.kind == "below_floor" and v.subject == a.account_id for v in violations)


def test_hold_state_corruption_found(db, books):
    _raw(db, "UPDATE ledger_holds SET status = 'voided'")
    assert "balance_mismatch" in {v.kind for v in check(db)}


def _run(database_url: str, *args: str):
    return CliRunner().invoke(app, list(args), env={"PIAOHAO_DATABASE_URL": database_url})


def test_cli_check_exit_codes(db, books, database_url):
    ok = _run(database_url, "check")
    assert ok.exit_code == 0, ok.output
    assert "ledger ok" in ok.output
    assert json.loads(_run(database_url, "check", "--json").output) == {"ok": True, "violations": []}
    _, a, _, _ = books
    _raw(db, "UPDATE ledger_balances SET posted = posted + 7, available = available + 7 WHERE account_id = :a",
         a=a.account_id)
    bad = _run(database_url, "check")
    assert bad.exit_code == 1
    assert "balance_mismatch" in bad.output
    as_json = _run(database_url, "check", "--json")
    assert as_json.exit_code == 1
    assert {v["kind"] for v in json.loads(as_json.output)["violations"]} >= {"balance_mismatch"}


def test_cli_statement(db, books, database_url):
    _, a, _, _ = books
    res = _run(database_url, "statement", a.account_id, "--json")
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert [ln["balance"] for ln in body["lines"]][:2] == [1000, 700]
    assert body["closing_balance"] == 780
    future = datetime(2100, 1, 1, tzinfo=UTC).isoformat()
    res = _run(database_url, "statement", a.account_id, "--from", future)
    assert res.exit_code == 0 and "opening balance: 780" in res.output
    assert _run(database_url, "statement", "acc_nope").exit_code == 1
    assert _run(database_url, "statement", a.account_id, "--from", "yesterday").exit_code == 2
