"""Reading the books: balances (summed over shards) and statements with a running balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from piaohao.db.schema_ledger import ledger_accounts, ledger_balances, ledger_entries, ledger_legs
from piaohao.kernel.errors import AccountNotFound
from piaohao.ledger.accounts import account_meta
from piaohao.ledger.model import Balance, Entry, EntryKey, StatementLine
from piaohao.ledger.posting import load_entries

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


def owner_figures(conn: Connection, owner_type: str, owner_id: str, currency: str
                  ) -> dict[str, tuple[int, int, int, int | None]]:
    """purpose -> (posted, pending_debits, available, available_floor) of every account an owner
    has in a currency, shards summed, in one query."""
    a, b = ledger_accounts.c, ledger_balances.c
    rows = conn.execute(
        select(a.purpose, func.sum(b.posted), func.sum(b.pending_debits), func.sum(b.available),
               func.min(b.available_floor))
        .join(ledger_balances, b.account_id == a.account_id)
        .where(a.owner_type == owner_type, a.owner_id == owner_id, a.currency == currency)
        .group_by(a.purpose)).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows}


def entry_movements(conn: Connection, key: EntryKey | tuple[str, str, str]) -> dict[str, int]:
    """account_id -> signed amount (debit > 0) that the entry under `key` moved; {} when none."""
    source_type, source_id, operation = key
    e, leg = ledger_entries.c, ledger_legs.c
    return {a: int(x) for a, x in conn.execute(
        select(leg.account_id, func.sum(leg.amount)).join(ledger_entries, e.entry_id == leg.entry_id)
        .where(e.source_type == source_type, e.source_id == source_id, e.operation == operation)
        .group_by(leg.account_id)).all() if x}


def movements_by_keys(conn: Connection, keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], dict[str, int]]:
    """entry key -> {account_id: signed amount moved} for many keys at once (reconciliation reads
    records against their entries set-based); keys without an entry are absent."""
    e, leg = ledger_entries.c, ledger_legs.c
    out: dict[tuple[str, str, str], dict[str, int]] = {}
    by_source: dict[tuple[str, str], set[str]] = {}
    for st, sid, op in keys:
        by_source.setdefault((st, op), set()).add(sid)
    for (st, op), ids in by_source.items():
        ids_list = sorted(ids)
        for i in range(0, len(ids_list), 900):
            part = ids_list[i:i + 900]
            for sid, account, amount in conn.execute(
                    select(e.source_id, leg.account_id, func.sum(leg.amount))
                    .join(ledger_entries, e.entry_id == leg.entry_id)
                    .where(e.source_type == st, e.operation == op, e.source_id.in_(part))
                    .group_by(e.source_id, leg.account_id)):
                out.setdefault((st, sid, op), {})[account] = int(amount)
    return out


KEYS_PER_READ_MAX = 900  # ids per IN list when reading many entries


def operation_movements(conn: Connection, source_type: str, operation: str,
                        source_ids: list[str]) -> dict[str, dict[str, int]]:
    """source_id -> (account_id -> signed amount moved), for the entries (source_type, id, operation)
    of many ids at once; an id without an entry is absent. `entry_movements` for a whole batch."""
    out: dict[str, dict[str, int]] = {}
    ids = sorted(set(source_ids))
    for i in range(0, len(ids), KEYS_PER_READ_MAX):
        rows = conn.execute(
            select(_e.source_id, _l.account_id, func.sum(_l.amount)).join(ledger_entries, _e.entry_id == _l.entry_id)
            .where(_e.source_type == source_type, _e.operation == operation,
                   _e.source_id.in_(ids[i:i + KEYS_PER_READ_MAX]))
            .group_by(_e.source_id, _l.account_id)).all()
        for source_id, account_id, amount in rows:
            if amount:
                out.setdefault(source_id, {})[account_id] = int(amount)
    return out


ACCOUNTS_LISTED_MAX = 1000


def list_accounts(conn: Connection, *, owner_id: str | None = None, owner_type: str | None = None,
                  limit: int = ACCOUNTS_LISTED_MAX) -> list[dict]:
    """Accounts with their balances (shards summed), oldest first, at most `limit` (capped at
    ACCOUNTS_LISTED_MAX): what an operator needs to find the ACCOUNT_ID of a statement."""
    a = ledger_accounts.c
    q = (select(a.account_id, a.owner_type, a.owner_id, a.purpose, a.currency, a.normal_side,
                func.coalesce(func.sum(_b.posted), 0), func.coalesce(func.sum(_b.available), 0))
         .select_from(ledger_accounts.outerjoin(ledger_balances, _b.account_id == a.account_id))
         .group_by(a.account_id, a.owner_type, a.owner_id, a.purpose, a.currency, a.normal_side, a.created_at)
         .order_by(a.created_at, a.account_id).limit(max(1, min(limit, ACCOUNTS_LISTED_MAX))))
    if owner_id is not None:
        q = q.where(a.owner_id == owner_id)
    if owner_type is not None:
        q = q.where(a.owner_type == owner_type)
    return [{"account_id": r[0], "owner_type": r[1], "owner_id": r[2], "purpose": r[3], "currency": r[4],
             "normal_side": r[5], "posted": int(r[6]), "available": int(r[7])} for r in conn.execute(q)]


ENTRIES_BY_SOURCE_MAX = 500


def entries_by_sources(conn: Connection, source_ids: list[str], *, limit: int = ENTRIES_BY_SOURCE_MAX) -> list[dict]:
    """The journal entries caused by any of these business records (a trade, its payments and
    refunds: what an operator reads beside a trade), oldest first, each with its legs and the
    legs' accounts: {"entry_id", "source_type", "source_id", "operation", "kind", "description",
    "created_at", "legs": [{"account_id", "owner_type", "owner_id", "purpose", "amount", "currency"}]}
    (amount signed: debit > 0). At most `limit` entries (capped at ENTRIES_BY_SOURCE_MAX)."""
    ids = sorted({s for s in source_ids if s})[:KEYS_PER_READ_MAX]
    if not ids:
        return []
    a = ledger_accounts.c
    entries = conn.execute(
        select(_e.entry_id, _e.source_type, _e.source_id, _e.operation, _e.kind, _e.description, _e.created_at)
        .where(_e.source_id.in_(ids)).order_by(_e.created_at, _e.entry_id)
        .limit(max(1, min(limit, ENTRIES_BY_SOURCE_MAX)))).mappings().all()
    out = {e["entry_id"]: dict(e, legs=[]) for e in entries}
    if not out:
        return []
    legs = conn.execute(
        select(_l.entry_id, _l.account_id, a.owner_type, a.owner_id, a.purpose, func.sum(_l.amount), _l.currency)
        .join(ledger_accounts, a.account_id == _l.account_id).where(_l.entry_id.in_(list(out)))
        .group_by(_l.entry_id, _l.account_id, a.owner_type, a.owner_id, a.purpose, _l.currency)
        .order_by(_l.entry_id, _l.account_id)).all()
    for entry_id, account_id, owner_type, owner_id, purpose, amount, currency in legs:
        out[entry_id]["legs"].append({"account_id": account_id, "owner_type": owner_type, "owner_id": owner_id,
                                      "purpose": purpose, "amount": int(amount), "currency": currency})
    return list(out.values())
