"""The SQL behind posting: lock + read balance rows, and write entries, legs and balances.

Two implementations of one contract, because the round trips decide throughput (bench/ledger):
- PostgreSQL: ONE statement per call, whatever the number of entries. Its first CTE locks every
  touched balance row with `SELECT ... ORDER BY account_id, shard FOR UPDATE` (one lock order for
  everybody, so no deadlocks) and reads `available` and the floor; the writes are conditional on
  every row existing and no floor being crossed; then data-modifying CTEs insert the entries (ON
  CONFLICT DO NOTHING on the idempotency key), the legs of the entries actually inserted, and add
  their deltas to the balance rows. A refusal therefore writes nothing, and a replayed key writes
  nothing for that entry. Array parameters keep the SQL text fixed, so psycopg prepares it once.
- SQLite (one writer at a time, so nothing to order): read the rows if a floor must be checked,
  then the same steps as separate statements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, text, tuple_, update
from sqlalchemy.dialects import sqlite

from piaohao.db.bulk import array_literal
from piaohao.db.schema_ledger import ledger_balances, ledger_entries, ledger_legs
from piaohao.kernel.errors import AccountNotFound, InsufficientFunds

RowKey = tuple[str, int]  # (account_id, shard)
Delta = tuple[int, int, int, int]  # posted, pending_debits, pending_credits, available
_b = ledger_balances.c
_e = ledger_entries.c


@dataclass(frozen=True)
class LegRow:
    account_id: str
    shard: int
    amount: int
    currency: str
    delta: Delta


@dataclass(frozen=True)
class EntryRow:
    entry_id: str
    source_type: str
    source_id: str
    operation: str
    hold_id: str | None
    description: str | None
    legs: tuple[LegRow, ...]


@dataclass(frozen=True)
class RowState:
    available: int
    floor: int | None


def sum_deltas(entries: Sequence[EntryRow]) -> dict[RowKey, list[int]]:
    deltas: dict[RowKey, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for e in entries:
        for leg in e.legs:
            d = deltas[(leg.account_id, leg.shard)]
            for j in range(4):
                d[j] += leg.delta[j]
    return dict(deltas)


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def shortfall(states: dict[RowKey, RowState], deltas: dict[RowKey, list[int]]) -> InsufficientFunds | None:
    """The first row (in lock order) that would go below its floor, as the error to raise."""
    for key in sorted(deltas):
        change, state = deltas[key][3], states[key]
        if state.floor is not None and change < 0 and state.available + change < state.floor:
            return InsufficientFunds(key[0], state.available, change, state.floor)
    return None


def _missing(keys, found) -> AccountNotFound:
    missing = sorted({k[0] for k in keys} - {k[0] for k in found})
    return AccountNotFound(f"unknown account(s): {missing}", account_ids=missing)


def read_rows(conn: Connection, keys: Sequence[RowKey]) -> dict[RowKey, RowState]:
    """Read balance rows (SQLite: under the writer lock, so they cannot change before we write)."""
    keys = sorted(set(keys))
    rows = conn.execute(select(_b.account_id, _b.shard, _b.available, _b.available_floor)
                        .where(tuple_(_b.account_id, _b.shard).in_(keys))).all()
    found = {(r[0], r[1]): RowState(r[2], r[3]) for r in rows}
    if len(found) != len(keys):
        raise _missing(keys, found)
    return found


def read_rows_present(conn: Connection, keys: Sequence[RowKey]) -> list[RowKey]:
    rows = conn.execute(select(_b.account_id, _b.shard).where(tuple_(_b.account_id, _b.shard).in_(sorted(set(keys)))))
    return [(r[0], r[1]) for r in rows]


# --- write -----------------------------------------------------------------------------------------
_PG_POST = text("""
WITH k AS (
  SELECT * FROM unnest(CAST(:k_account AS text[]), CAST(:k_shard AS int[]), CAST(:k_change AS bigint[]))
         AS k(account_id, shard, change)
), locked AS MATERIALIZED (
  SELECT b.account_id, b.shard, b.posted, b.pending_debits, b.pending_credits, b.available, b.available_floor,
         k.change
  FROM ledger_balances b JOIN k ON b.account_id = k.account_id AND b.shard = k.shard
  ORDER BY b.account_id, b.shard
  FOR UPDATE OF b
), short AS (
  SELECT * FROM locked
  WHERE :check AND available_floor IS NOT NULL AND change < 0 AND available + change < available_floor
), new_entries AS (
  INSERT INTO ledger_entries (entry_id, source_type, source_id, operation, kind, hold_id, description, created_at)
  SELECT e.entry_id, e.source_type, e.source_id, e.operation, :kind, e.hold_id, e.description, :at
  FROM unnest(CAST(:e_id AS text[]), CAST(:e_source_type AS text[]), CAST(:e_source_id AS text[]),
              CAST(:e_operation AS text[]), CAST(:e_hold_id AS text[]), CAST(:e_description AS text[]))
       AS e(entry_id, source_type, source_id, operation, hold_id, description)
  WHERE (SELECT COUNT(*) FROM locked) = :n_rows AND NOT EXISTS (SELECT 1 FROM short)
  ON CONFLICT (source_type, source_id, operation) DO NOTHING
  RETURNING entry_id
), v AS (
  SELECT l.* FROM unnest(CAST(:l_entry AS text[]), CAST(:l_account AS text[]), CAST(:l_shard AS int[]),
                         CAST(:l_amount AS bigint[]), CAST(:l_currency AS text[]), CAST(:l_posted AS bigint[]),
                         CAST(:l_pending_debits AS bigint[]), CAST(:l_pending_credits AS bigint[]),
                         CAST(:l_available AS bigint[]))
       WITH ORDINALITY AS l(entry_id, account_id, shard, amount, currency, d_posted, d_pd, d_pc, d_available, n)
  JOIN new_entries ne ON ne.entry_id = l.entry_id
), new_legs AS (
  INSERT INTO ledger_legs (entry_id, account_id, shard, amount, currency, is_pending, created_at)
  SELECT entry_id, account_id, shard, amount, currency, :pending, :at FROM v ORDER BY n
), deltas AS (
  SELECT account_id, shard, SUM(d_posted) AS dp, SUM(d_pd) AS dd, SUM(d_pc) AS dc, SUM(d_available) AS da
  FROM v GROUP BY account_id, shard
), upd AS (
  -- New values from the row as read under our lock (`locked`), not from `b`: `b` is the version
  -- in this statement's snapshot, possibly older, and PostgreSQL checks CHECK constraints on the
  -- row computed from it before it notices the newer version and re-evaluates.
  UPDATE ledger_balances b
  SET posted = l.posted + d.dp, pending_debits = l.pending_debits + d.dd,
      pending_credits = l.pending_credits + d.dc, available = l.available + d.da
  FROM deltas d JOIN locked l ON l.account_id = d.account_id AND l.shard = d.shard
  WHERE b.account_id = d.account_id AND b.shard = d.shard
)
SELECT 'entry', entry_id, NULL, NULL, NULL, NULL FROM new_entries
UNION ALL
SELECT 'short', account_id, shard, available, available_floor, change FROM short
UNION ALL
SELECT 'rows', NULL, CAST(COUNT(*) AS int), NULL, NULL, NULL FROM locked
""")


def _pg_post(conn: Connection, entries: Sequence[EntryRow], kind: str, at: datetime, check: bool) -> set[str]:
    deltas = sum_deltas(entries)
    keys = sorted(deltas)
    legs = [(e.entry_id, leg) for e in entries for leg in e.legs]
    a = array_literal
    params = {
        "check": check, "n_rows": len(keys), "kind": kind, "at": at, "pending": kind == "pending",
        "k_account": a([k[0] for k in keys]), "k_shard": a([k[1] for k in keys]),
        "k_change": a([deltas[k][3] for k in keys]),
        "e_id": a([e.entry_id for e in entries]), "e_source_type": a([e.source_type for e in entries]),
        "e_source_id": a([e.source_id for e in entries]), "e_operation": a([e.operation for e in entries]),
        "e_hold_id": a([e.hold_id for e in entries]), "e_description": a([e.description for e in entries]),
        "l_entry": a([eid for eid, _ in legs]), "l_account": a([leg.account_id for _, leg in legs]),
        "l_shard": a([leg.shard for _, leg in legs]), "l_amount": a([leg.amount for _, leg in legs]),
        "l_currency": a([leg.currency for _, leg in legs]),
        "l_posted": a([leg.delta[0] for _, leg in legs]), "l_pending_debits": a([leg.delta[1] for _, leg in legs]),
        "l_pending_credits": a([leg.delta[2] for _, leg in legs]), "l_available": a([leg.delta[3] for _, leg in legs]),
    }
    inserted: set[str] = set()
    found = 0
    short: list = []
    for what, ident, shard, available, floor, change in conn.execute(_PG_POST, params):
        if what == "entry":
            inserted.add(ident)
        elif what == "rows":
            found = shard
        else:
            short.append((ident, shard, available, floor, change))
    if found != len(keys):  # the refusal path only: which rows are missing
        raise _missing(keys, set(read_rows_present(conn, keys)))
    if short:
        account_id, _, available, floor, change = min(short)
        raise InsufficientFunds(account_id, available, change, floor)
    return inserted


_SQLITE_INSERT_ENTRIES = (sqlite.insert(ledger_entries)
                          .on_conflict_do_nothing(index_elements=["source_type", "source_id", "operation"])
                          .returning(_e.entry_id))


def _sqlite_post(conn: Connection, entries: Sequence[EntryRow], kind: str, at: datetime, check: bool) -> set[str]:
    deltas = sum_deltas(entries)
    if check and (short := shortfall(read_rows(conn, list(deltas)), deltas)) is not None:
        raise short
    inserted = set(conn.execute(_SQLITE_INSERT_ENTRIES, [
        {"entry_id": e.entry_id, "source_type": e.source_type, "source_id": e.source_id, "operation": e.operation,
         "kind": kind, "hold_id": e.hold_id, "description": e.description, "created_at": at}
        for e in entries]).scalars())
    fresh = [e for e in entries if e.entry_id in inserted]
    if fresh:
        conn.execute(ledger_legs.insert(), [
            {"entry_id": e.entry_id, "account_id": leg.account_id, "shard": leg.shard, "amount": leg.amount,
             "currency": leg.currency, "is_pending": kind == "pending", "created_at": at}
            for e in fresh for leg in e.legs])
        apply_deltas(conn, sum_deltas(fresh))
    return inserted


def post_rows(conn: Connection, entries: Sequence[EntryRow], kind: str, at: datetime, *, check: bool) -> set[str]:
    """Write the entries whose key is new (legs, balance deltas); returns the ids actually inserted.

    With `check`, raises InsufficientFunds before writing anything if a constrained row would go
    below its floor (counting every entry given, replays included); AccountNotFound likewise.
    """
    return (_pg_post if is_pg(conn) else _sqlite_post)(conn, entries, kind, at, check)


_UPDATE_BALANCE = (
    update(ledger_balances)
    .where(_b.account_id == bindparam("k_account_id"), _b.shard == bindparam("k_shard"))
    .values(posted=_b.posted + bindparam("d_posted"),
            pending_debits=_b.pending_debits + bindparam("d_pending_debits"),
            pending_credits=_b.pending_credits + bindparam("d_pending_credits"),
            available=_b.available + bindparam("d_available"))
)


def apply_deltas(conn: Connection, deltas: dict[RowKey, list[int]]) -> None:
    """One executemany UPDATE (pipelined by psycopg), rows in (account_id, shard) order."""
    params = [{"k_account_id": acc, "k_shard": shard, "d_posted": d[0], "d_pending_debits": d[1],
               "d_pending_credits": d[2], "d_available": d[3]}
              for (acc, shard), d in sorted(deltas.items()) if any(d)]
    if not params:
        return
    result = conn.execute(_UPDATE_BALANCE, params)
    if result.rowcount != len(params):
        # Only reachable with an account id whose creation was rolled back after it was cached; by
        # now other rows are written, so this is not a LedgerError: the caller must roll back.
        raise RuntimeError("ledger: a balance row is missing; roll the transaction back")
