"""Reading the books: balances (summed over shards) and statements with a running balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from piaohao.kernel.errors import AccountNotFound
from piaohao.ledger.accounts import account_meta
from piaohao.ledger.model import Balance, Entry, EntryKey, StatementLine
from piaohao.ledger.posting import load_entries
from piaohao.ledger.schema import ledger_balances, ledger_entries, ledger_legs

_b = ledger_balances.c
_e = ledger_entries.c
_l = ledger_legs.c


def balance(conn: Connection, account_id: str) -> Balance:
    """The account's balance in its normal-side terms (a hot account's shards summed)."""
    row = conn.execute(select(func.count(), func.sum(_b.posted), func.sum(_b.pending_debits),
                              func.sum(_b.pending_credits), func.sum(_b.available))
                       .where(_b.account_id == account_id)).one()
    if row[0] == 0:
        raise AccountNotFound(f"unknown account {account_id}", account_id=account_id)
    return Balance(int(row[1]), int(row[2]), int(row[3]), int(row[4]))


def get_entry(conn: Connection, key: EntryKey | tuple[str, str, str]) -> Entry | None:
    k = key if isinstance(key, EntryKey) else EntryKey(*key)
    found = load_entries(conn, [k]).get(k)
    return None if found is None else Entry(found.entry_id, found.key, found.kind, found.legs,
                                            found.created_at, found.description, found.hold_id)


@dataclass(frozen=True)
class Statement:
    account_id: str
    start: datetime | None
    end: datetime | None
    opening_balance: int  # posted balance just before `start` (normal-side terms)
    closing_balance: int  # posted balance after the last line
    lines: list[StatementLine]


def statement(conn: Connection, account_id: str, start: datetime | None = None,
              end: datetime | None = None) -> Statement:
    """Posted legs with `start <= created_at < end`, oldest first, each with the running balance.

    Holds are not lines until posted (their reservation shows in `balance`, not here).
    """
    sign = account_meta(conn, [account_id])[account_id].normal_side.sign
    opening = 0
    if start is not None:
        opening = sign * int(conn.execute(
            select(func.coalesce(func.sum(_l.amount), 0))
            .where(_l.account_id == account_id, _l.is_pending.is_(False), _l.created_at < start)).scalar_one())
    q = (select(_l.leg_id, _l.entry_id, _l.amount, _l.created_at, _e.source_type, _e.source_id, _e.operation,
                _e.description)
         .join(ledger_entries, _e.entry_id == _l.entry_id)
         .where(_l.account_id == account_id, _l.is_pending.is_(False))
         .order_by(_l.created_at, _l.leg_id))
    if start is not None:
        q = q.where(_l.created_at >= start)
    if end is not None:
        q = q.where(_l.created_at < end)
    running = opening
    lines: list[StatementLine] = []
    for r in conn.execute(q):
        change = sign * r.amount
        running += change
        lines.append(StatementLine(
            r.leg_id, r.entry_id, EntryKey(r.source_type, r.source_id, r.operation), r.created_at,
            debit=r.amount if r.amount > 0 else 0, credit=-r.amount if r.amount < 0 else 0,
            change=change, running_balance=running, description=r.description))
    return Statement(account_id, start, end, opening, running, lines)
