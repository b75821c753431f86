"""`piaohao ledger ...`: check the books, print a statement. Opens PIAOHAO_DATABASE_URL like `piaohao.cli`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from piaohao.bootstrap import open_database
from piaohao.cli.common import _print
from piaohao.kernel.errors import LedgerError
from piaohao.kernel.settings import Settings, SettingsError
from piaohao.ledger.check import check
from piaohao.ledger.reading import list_accounts, statement

app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True, add_completion=False)


def _db():
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    return open_database(settings)


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        typer.echo(f"error: {name}: expected an ISO 8601 date or time, got {value!r}", err=True)
        raise typer.Exit(2) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("check")
def check_cmd(as_json: bool = typer.Option(False, "--json", help="Print the violations as JSON.")):
    """Check the books; exit 0 when clean, 1 with every violation listed otherwise."""
    db = _db()
    try:
        violations = check(db)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"ok": not violations, "violations": [v.as_dict() for v in violations]}))
    elif violations:
        for v in violations:
            typer.echo(f"{v.kind}: {v.message}")
        typer.echo(f"{len(violations)} violation(s)")
    else:
        typer.echo("ledger ok")
    if violations:
        raise typer.Exit(1)


@app.command("accounts")
def accounts_cmd(
    owner: str | None = typer.Option(None, "--owner", help="Only this owner's accounts (a merchant, member, ...)."),
    owner_type: str | None = typer.Option(None, "--owner-type", help="Only owners of this type (merchant, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The accounts with their balances: the ACCOUNT_ID that `ledger statement` needs."""
    db = _db()
    try:
        with db.read() as conn:
            rows = list_accounts(conn, owner_id=owner, owner_type=owner_type)
    finally:
        db.dispose()
    _print(rows, as_json)


@app.command("statement")
def statement_cmd(
    account_id: str,
    start: str | None = typer.Option(None, "--from", help="Start (inclusive), ISO 8601; UTC if no offset."),
    end: str | None = typer.Option(None, "--to", help="End (exclusive), ISO 8601; UTC if no offset."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """The account's posted legs in [from, to) with a running balance (normal-side terms)."""
    db = _db()
    try:
        with db.read() as conn:
            st = statement(conn, account_id, _when(start, "--from"), _when(end, "--to"))
    except LedgerError as e:
        typer.echo(f"error: {e.code}: {e.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    lines = [{"leg_id": ln.leg_id, "entry_id": ln.entry_id, "at": ln.created_at.isoformat(),
              "source": f"{ln.key.source_type}/{ln.key.source_id}/{ln.key.operation}", "debit": ln.debit,
              "credit": ln.credit, "balance": ln.running_balance, "description": ln.description}
             for ln in st.lines]
    if as_json:
        typer.echo(json.dumps({"account_id": account_id, "opening_balance": st.opening_balance,
                               "closing_balance": st.closing_balance, "lines": lines}, ensure_ascii=False))
        return
    typer.echo(f"opening balance: {st.opening_balance}")
    for ln in lines:
        typer.echo(f"{ln['at']}  {ln['source']}  debit={ln['debit']}  credit={ln['credit']}  "
                   f"balance={ln['balance']}")
    typer.echo(f"closing balance: {st.closing_balance}")
