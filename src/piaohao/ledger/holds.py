"""Two-phase entries: reserve now, post or void later, or let a sweep void it after its timeout.

A hold is a pending entry (its legs count in `pending_debits` / `pending_credits`, and the ones
against an account's normal side lower `available`, so a constrained account cannot promise the
same money twice) plus a `ledger_holds` row with its state. Posting writes a new, ordinary entry
with the same legs on the same shards and releases the reservation; voiding only releases it.
Neither can lower `available`, so neither needs a floor check. Entries and legs stay append-only;
the hold row is the only thing that changes, and the first statement of post/void is a
conditional UPDATE of it, which is what makes a second post/void idempotent under concurrency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, or_, select, update

from piaohao.db.database import Database
from piaohao.db.schema_ledger import ledger_holds, ledger_legs
from piaohao.kernel.errors import HoldNotFound, HoldNotPending
from piaohao.ledger.accounts import account_meta
from piaohao.ledger.model import Entry, EntryKey, Hold, Leg, fast_id, instant, validate_legs
from piaohao.ledger.posting import Item, Mode, leg_delta, load_entries, write_entries
from piaohao.ledger.store import apply_deltas

HOLD_SOURCE_TYPE = "ledger_hold"  # key of the entry that posts a hold: (ledger_hold, hold_id, post)
SWEEP_BATCH_HOLDS = 500
_h = ledger_holds.c
_l = ledger_legs.c


def _hold_legs(conn: Connection, hold_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int]]]:
    out: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for r in conn.execute(select(_l.entry_id, _l.account_id, _l.amount, _l.shard)
                          .where(_l.entry_id.in_(list(hold_ids))).order_by(_l.leg_id)):
        out[r.entry_id].append((r.account_id, r.amount, r.shard))
    return out


def get_hold(conn: Connection, hold_id: str, *, replayed: bool = False) -> Hold:
    row = conn.execute(select(ledger_holds).where(_h.hold_id == hold_id)).first()
    if row is None:
        raise HoldNotFound(f"unknown hold {hold_id}", hold_id=hold_id)
    legs = tuple(Leg(a, amt) for a, amt, _ in _hold_legs(conn, [hold_id])[hold_id])
    return Hold(row.hold_id, row.status, legs, row.expires_at, row.resolved_entry_id, replayed=replayed)


def reserve(conn: Connection, key: EntryKey | tuple[str, str, str], legs: Sequence[Leg], *,
            expires_at: datetime | None = None, description: str | None = None,
            at: datetime | None = None) -> Hold:
    """Reserve a balanced set of legs; raises InsufficientFunds like `post_entry` (pending counts).

    The same key with the same legs returns the original hold (whatever its state now).
    """
    at = instant(at)
    if expires_at is not None:
        instant(expires_at, "expires_at")
    k = key if isinstance(key, EntryKey) else EntryKey(*key)
    entry = write_entries(conn, [Item(k, validate_legs(legs), description)], kind="pending",
                          mode=Mode.RESERVE, at=at)[0]
    if entry.replayed:
        return get_hold(conn, entry.entry_id, replayed=True)
    conn.execute(ledger_holds.insert().values(hold_id=entry.entry_id, status="pending", expires_at=expires_at,
                                              created_at=at))
    return Hold(entry.entry_id, "pending", entry.legs, expires_at, None)


def post_hold(conn: Connection, hold_id: str, *, description: str | None = None,
              at: datetime | None = None) -> Entry:
    """Post a pending hold in full: a new entry with its legs. Posting it again returns that entry.

    Refused with HoldNotPending when the hold was voided or expired, or is past its `expires_at`.
    """
    at = instant(at)
    entry_id = fast_id("je")
    won = conn.execute(
        update(ledger_holds)
        .where(_h.hold_id == hold_id, _h.status == "pending", or_(_h.expires_at.is_(None), _h.expires_at > at))
        .values(status="posted", resolved_entry_id=entry_id, resolved_at=at)
    ).rowcount == 1
    key = EntryKey(HOLD_SOURCE_TYPE, hold_id, "post")
    if not won:
        hold = get_hold(conn, hold_id)
        if hold.status == "posted":
            return load_entries(conn, [key])[key]
        if hold.status == "pending":
            raise HoldNotPending(hold_id, "expired", f"hold {hold_id} expired at {hold.expires_at}")
        raise HoldNotPending(hold_id, hold.status)
    legs = _hold_legs(conn, [hold_id])[hold_id]
    item = Item(key, tuple(Leg(a, amt) for a, amt, _ in legs), description, hold_id=hold_id,
                shards=tuple(s for _, _, s in legs), entry_id=entry_id)
    return write_entries(conn, [item], kind="posted", mode=Mode.POST_HOLD, at=at)[0]


def _release(conn: Connection, hold_ids: Sequence[str]) -> None:
    legs_by_hold = _hold_legs(conn, hold_ids)
    meta = account_meta(conn, {a for legs in legs_by_hold.values() for a, _, _ in legs})
    deltas: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for legs in legs_by_hold.values():
        for account_id, amount, shard in legs:
            d = deltas[(account_id, shard)]
            for j, v in enumerate(leg_delta(Mode.VOID_HOLD, meta[account_id].normal_side.sign, amount)):
                d[j] += v
    apply_deltas(conn, deltas)


def void_hold(conn: Connection, hold_id: str, *, at: datetime | None = None) -> Hold:
    """Release a pending hold. Voiding a voided/expired one returns it; a posted one is refused."""
    at = instant(at)
    won = conn.execute(
        update(ledger_holds).where(_h.hold_id == hold_id, _h.status == "pending")
        .values(status="voided", resolved_at=at)
    ).rowcount == 1
    if not won:
        hold = get_hold(conn, hold_id, replayed=True)
        if hold.status == "posted":
            raise HoldNotPending(hold_id, "posted")
        return hold
    _release(conn, [hold_id])
    return get_hold(conn, hold_id)


def _sweep_batch(conn: Connection, now: datetime, batch_size: int) -> int:
    due = (select(_h.hold_id)
           .where(_h.status == "pending", _h.expires_at.is_not(None), _h.expires_at <= now)
           .order_by(_h.hold_id).limit(batch_size)
           .with_for_update(skip_locked=True))
    ids = sorted(conn.execute(
        update(ledger_holds).where(_h.hold_id.in_(due.scalar_subquery()), _h.status == "pending")
        .values(status="expired", resolved_at=now).returning(_h.hold_id)).scalars())
    if ids:
        _release(conn, ids)
    return len(ids)


def void_expired_holds(target: Connection | Database, now: datetime, *, batch_size: int = SWEEP_BATCH_HOLDS) -> int:
    """Expire every pending hold whose `expires_at` <= now; returns how many.

    `target` is a Connection (all in the caller's transaction) or a Database (one transaction per
    batch of `batch_size`, so a large backlog does not hold locks for long). Concurrent sweepers
    skip each other's rows on PostgreSQL (FOR UPDATE SKIP LOCKED).
    """
    now = instant(now, "now")
    if isinstance(target, Connection):
        total = 0
        while (n := _sweep_batch(target, now, batch_size)) > 0:
            total += n
        return total
    total = 0
    while True:
        n = target.write(lambda conn: _sweep_batch(conn, now, batch_size))
        total += n
        if n < batch_size:
            return total
