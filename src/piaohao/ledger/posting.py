"""Posting journal entries in the caller's transaction: validation, idempotency, balance checks.

Order of work, for one entry or a batch:
1. validate legs and keys, and that each entry sums to zero per currency (no database work but
   the cached account facts);
2. lock the touched balance rows in (account_id, shard) order and read them (PostgreSQL always,
   for the lock order; SQLite only when a floor must be checked, its writer lock serialises);
3. check floors: a constrained account whose `available` would go below its floor raises
   InsufficientFunds (unless the entry turns out to be a replay);
4. write, via `piaohao.ledger.store`: entries whose key is new, their legs, their balance deltas;
5. entries whose key already existed are compared with the original: same legs -> the original
   is returned (`replayed=True`), other legs -> EntryKeyConflict.

So every refusal (bad leg, unbalanced, unknown account, insufficient funds, replay with other legs
for a single entry) is raised before anything is written: the caller may catch it and carry on in
the same transaction. The one exception: in a batch, if a concurrent transaction posts one of the
batch's keys with other legs between steps 3 and 4, EntryKeyConflict is raised after the other
entries were written; roll back (as `Database.write` does for any exception).

Entries of one call never deadlock each other's balance rows. Separate transactions that post
several entries each may; PostgreSQL detects it and `Database.write` retries.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import Connection, select, tuple_

from piaohao.db.schema_ledger import ledger_entries, ledger_legs
from piaohao.kernel.errors import EntryKeyConflict, InsufficientFunds, InvalidLeg
from piaohao.ledger.accounts import AccountMeta, account_meta
from piaohao.ledger.model import (
    Constraint,
    Entry,
    EntryKey,
    Leg,
    NewEntry,
    check_balanced,
    fast_id,
    instant,
    legs_signature,
    validate_amount,
    validate_legs,
)
from piaohao.ledger.store import EntryRow, LegRow, post_rows, sum_deltas

_e = ledger_entries.c
_l = ledger_legs.c


class Mode(Enum):
    """What a leg does to its balance row."""

    POST = "post"  # an ordinary posted entry
    RESERVE = "reserve"  # a hold's pending entry
    POST_HOLD = "post_hold"  # the entry that posts a hold
    VOID_HOLD = "void_hold"  # releasing a hold (no entry)


def leg_delta(mode: Mode, sign: int, amount: int) -> tuple[int, int, int, int]:
    """(posted, pending_debits, pending_credits, available) changes of one leg, normal-side terms.

    available = posted - (pending amounts against the normal side), so only an ordinary posting
    or a reservation can lower it; posting or voiding a hold never does (its reservation already did).
    """
    normal = sign * amount
    pend_d, pend_c = (amount, 0) if amount > 0 else (0, -amount)
    if mode is Mode.POST:
        return normal, 0, 0, normal
    if mode is Mode.RESERVE:
        return 0, pend_d, pend_c, min(normal, 0)
    if mode is Mode.POST_HOLD:
        return normal, -pend_d, -pend_c, max(normal, 0)
    return 0, -pend_d, -pend_c, max(-normal, 0)


@dataclass(frozen=True)
class Item:
    """One entry to write; `shards` pins each leg's shard (posting a hold reuses the reservation's)."""

    key: EntryKey
    legs: tuple[Leg, ...]
    description: str | None = None
    hold_id: str | None = None
    shards: tuple[int, ...] | None = None
    entry_id: str | None = None  # preset by the caller (a hold records its posting entry's id first)


def load_entries(conn: Connection, keys: Sequence[EntryKey]) -> dict[EntryKey, Entry]:
    if not keys:
        return {}
    rows = conn.execute(
        select(ledger_entries).where(
            tuple_(_e.source_type, _e.source_id, _e.operation).in_([(k.source_type, k.source_id, k.operation)
                                                                     for k in keys]))).all()
    by_id = {r.entry_id: r for r in rows}
    legs: dict[str, list[Leg]] = {eid: [] for eid in by_id}
    if by_id:
        for lr in conn.execute(select(_l.entry_id, _l.account_id, _l.amount)
                               .where(_l.entry_id.in_(list(by_id))).order_by(_l.leg_id)):
            legs[lr.entry_id].append(Leg(lr.account_id, lr.amount))
    return {EntryKey(r.source_type, r.source_id, r.operation): Entry(
        r.entry_id, EntryKey(r.source_type, r.source_id, r.operation), r.kind, tuple(legs[r.entry_id]),
        r.created_at, r.description, r.hold_id, replayed=True) for r in rows}


def _replay(existing: Entry, item: Item, kind: str) -> Entry:
    if existing.kind != kind or legs_signature(existing.legs) != legs_signature(item.legs):
        raise EntryKeyConflict(
            f"entry {existing.entry_id} already posted for {item.key} with other legs",
            entry_id=existing.entry_id)
    return existing


def _plan(item: Item, entry_id: str, meta: dict[str, AccountMeta], mode: Mode) -> EntryRow:
    legs = []
    for i, leg in enumerate(item.legs):
        m = meta[leg.account_id]
        shard = item.shards[i] if item.shards else (random.randrange(m.shard_count) if m.shard_count > 1 else 0)
        legs.append(LegRow(leg.account_id, shard, leg.amount, m.currency,
                           leg_delta(mode, m.normal_side.sign, leg.amount)))
    k = item.key
    return EntryRow(entry_id, k.source_type, k.source_id, k.operation, item.hold_id, item.description, tuple(legs))


def write_entries(conn: Connection, items: Sequence[Item], *, kind: str, mode: Mode,
                  at: datetime | None = None) -> list[Entry]:
    """Write entries (new ones) or return the originals (replays), in `items` order."""
    at = instant(at)
    meta = account_meta(conn, {leg.account_id for it in items for leg in it.legs})
    currency_of = {acc: m.currency for acc, m in meta.items()}
    first_of: dict[EntryKey, Item] = {}
    for it in items:
        check_balanced(it.legs, currency_of)
        seen = first_of.setdefault(it.key, it)
        if seen is not it and legs_signature(seen.legs) != legs_signature(it.legs):
            raise EntryKeyConflict(f"two entries in one batch share the key {it.key} with other legs")
    # Sorted by key: concurrent batches insert their keys in one order too.
    unique = sorted(first_of.values(), key=lambda it: (it.key.source_type, it.key.source_id, it.key.operation))
    rows = [_plan(it, it.entry_id or fast_id("je"), meta, mode) for it in unique]
    deltas = sum_deltas(rows)
    check = any(d[3] < 0 and meta[k[0]].constraint is not Constraint.NONE for k, d in deltas.items())
    existing: dict[EntryKey, Entry] = {}
    try:
        inserted = post_rows(conn, rows, kind, at, check=check)
    except InsufficientFunds:
        # A replay of an entry posted when there was money must still answer with the original.
        existing = load_entries(conn, [it.key for it in unique])
        rows = [r for r, it in zip(rows, unique, strict=True) if it.key not in existing]
        if not existing:
            raise
        inserted = post_rows(conn, rows, kind, at, check=check) if rows else set()
    by_key = {EntryKey(r.source_type, r.source_id, r.operation): r.entry_id for r in rows}
    results: dict[EntryKey, Entry] = {}
    missing = [it.key for it in unique if by_key.get(it.key) not in inserted and it.key not in existing]
    existing.update(load_entries(conn, missing))
    for it in unique:
        if by_key.get(it.key) in inserted:
            results[it.key] = Entry(by_key[it.key], it.key, kind, it.legs, at, it.description, it.hold_id)
        else:
            results[it.key] = _replay(existing[it.key], it, kind)
    return [results[it.key] for it in items]


def _item(key: EntryKey | tuple[str, str, str], legs: Sequence[Leg], description: str | None) -> Item:
    k = key if isinstance(key, EntryKey) else EntryKey(*key)
    return Item(k, validate_legs(legs), description)


def post_entry(conn: Connection, key: EntryKey | tuple[str, str, str], legs: Sequence[Leg], *,
               description: str | None = None, at: datetime | None = None) -> Entry:
    """Post one balanced entry in the caller's transaction; a replay of the same key returns the original.

    Raises InvalidLeg, UnbalancedEntry, AccountNotFound, EntryKeyConflict (same key, other legs),
    InsufficientFunds (a constrained account would go below its floor, counting pending holds).
    """
    return write_entries(conn, [_item(key, legs, description)], kind="posted", mode=Mode.POST, at=at)[0]


def post_entries(conn: Connection, entries: Sequence[NewEntry], *, at: datetime | None = None) -> list[Entry]:
    """Post many entries at once (one SQL statement on PostgreSQL): the batch path.

    All or nothing, except for the concurrent-key race described in the module docstring.
    """
    if not entries:
        return []
    return write_entries(conn, [_item(e.key, e.legs, e.description) for e in entries],
                         kind="posted", mode=Mode.POST, at=at)


def transfer(conn: Connection, key: EntryKey | tuple[str, str, str], debit_account_id: str,
             credit_account_id: str, amount: int, *, description: str | None = None,
             at: datetime | None = None) -> Entry:
    """Two-leg entry: debit one account and credit the other by `amount` (> 0)."""
    if validate_amount(amount) < 0:
        raise InvalidLeg("transfer amount must be positive")
    return post_entry(conn, key, [Leg(debit_account_id, amount), Leg(credit_account_id, -amount)],
                      description=description, at=at)
