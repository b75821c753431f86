"""Accounts: creation (safe under concurrency), lookup, credit limits, and caches of immutable facts.

An account's owner, purpose, currency, normal side, constraint kind and shard count never change
after creation, so the poster reads them from an in-process cache instead of a round trip per
entry, and `find_account` (every `books.chart` constructor) answers an account it has read before
from a cache keyed by the natural key, per engine (a fresh database is a fresh engine). Only
committed accounts enter that cache: one this transaction inserted is never cached, however it
is found, since the transaction may still roll back (a rolled-back account would else be handed
out). Credit-limit accounts are never cached (their `Account` carries the limit, which changes).
The mutable part (balances, the credit limit as `available_floor`) is always read from the
database, under a row lock when it is checked.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, text, update

from piaohao.db.bulk import array_literal, insert_rows, pg_array
from piaohao.db.inserts import dialect_insert
from piaohao.db.schema_ledger import ledger_accounts, ledger_balances
from piaohao.kernel.errors import AccountConflict, AccountNotFound, CreditLimitBelowUsed, InvalidLeg, LedgerError
from piaohao.kernel.ids import new_id
from piaohao.kernel.invariants import require
from piaohao.kernel.money import AMOUNT_MAX, CURRENCY_RE
from piaohao.ledger.model import Account, Constraint, NormalSide, fast_id

META_CACHE_MAX_ACCOUNTS = 200_000
KNOWN_CACHE_MAX_ACCOUNTS = 100_000
HOT_SHARDS_MAX = 256
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class AccountMeta:
    """The immutable facts the poster needs for every leg."""

    account_id: str
    currency: str
    normal_side: NormalSide
    constraint: Constraint
    shard_count: int


_meta_cache: dict[str, AccountMeta] = {}
_meta_lock = threading.Lock()


def _row_to_meta(row) -> AccountMeta:
    return AccountMeta(row.account_id, row.currency, NormalSide(row.normal_side),
                       Constraint(row.constraint_kind), row.shard_count)


def account_meta(conn: Connection, account_ids: Iterable[str]) -> dict[str, AccountMeta]:
    """Facts for each id (cached); raises AccountNotFound naming any unknown id."""
    ids = set(account_ids)
    found = {i: m for i in ids if (m := _meta_cache.get(i)) is not None}
    missing = ids - found.keys()
    if missing:
        a = ledger_accounts.c
        ids_in = (pg_array(a.account_id, sorted(missing)) if conn.dialect.name == "postgresql"
                  else a.account_id.in_(sorted(missing)))
        rows = conn.execute(select(a.account_id, a.currency, a.normal_side, a.constraint_kind, a.shard_count)
                            .where(ids_in)).all()
        with _meta_lock:
            if len(_meta_cache) > META_CACHE_MAX_ACCOUNTS:
                _meta_cache.clear()
            for row in rows:
                found[row.account_id] = _meta_cache[row.account_id] = _row_to_meta(row)
        unknown = ids - found.keys()
        if unknown:
            raise AccountNotFound(f"unknown account(s): {sorted(unknown)}", account_ids=sorted(unknown))
    return found


def _account_from_row(row, floor: int | None) -> Account:
    constraint = Constraint(row.constraint_kind)
    return Account(row.account_id, row.owner_type, row.owner_id, row.purpose, row.currency,
                   NormalSide(row.normal_side), constraint, row.shard_count,
                   credit_limit=-floor if constraint is Constraint.CREDIT_LIMIT and floor is not None else None)


def _select_account():
    a, b = ledger_accounts.c, ledger_balances.c
    return (select(ledger_accounts, b.available_floor)
            .join(ledger_balances, (b.account_id == a.account_id) & (b.shard == 0)))


def get_account(conn: Connection, account_id: str) -> Account:
    row = conn.execute(_select_account().where(ledger_accounts.c.account_id == account_id)).first()
    if row is None:
        raise AccountNotFound(f"unknown account {account_id}", account_id=account_id)
    return _account_from_row(row, row.available_floor)


NaturalKey = tuple[str, str, str, str]  # owner_type, owner_id, purpose, currency
_known: weakref.WeakKeyDictionary[Engine, dict[NaturalKey, Account]] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()
_CREATED_HERE = "piaohao.ledger.accounts_created"  # conn.info: (transaction, natural keys it inserted)


def _created_here(conn: Connection) -> set[NaturalKey]:
    """The natural keys of the accounts the connection's open transaction inserted (not committed
    yet, so never cached). Kept with the transaction object: a new transaction starts empty."""
    txn = conn.get_transaction()
    held = conn.info.get(_CREATED_HERE)
    if held is None or held[0] is not txn:
        held = conn.info[_CREATED_HERE] = (txn, set())
    return held[1]


def _remember(conn: Connection, key: NaturalKey, account: Account) -> None:
    """Cache an account found by a read, unless this transaction created it or it has a credit limit."""
    if account.constraint is Constraint.CREDIT_LIMIT or key in _created_here(conn):
        return
    with _known_lock:
        known = _known.setdefault(conn.engine, {})
        if len(known) >= KNOWN_CACHE_MAX_ACCOUNTS:
            known.clear()
        known[key] = account
    with _meta_lock:  # the poster's facts too: a posting to it needs no read of its own
        if len(_meta_cache) > META_CACHE_MAX_ACCOUNTS:
            _meta_cache.clear()
        _meta_cache[account.account_id] = AccountMeta(account.account_id, account.currency, account.normal_side,
                                                      account.constraint, account.shard_count)


def find_account(conn: Connection, owner_type: str, owner_id: str, purpose: str, currency: str) -> Account | None:
    key = (owner_type, owner_id, purpose, currency)
    known = _known.get(conn.engine)
    if known is not None and (cached := known.get(key)) is not None:
        return cached
    a = ledger_accounts.c
    row = conn.execute(_select_account().where(
        a.owner_type == owner_type, a.owner_id == owner_id, a.purpose == purpose, a.currency == currency)).first()
    if row is None:
        return None
    account = _account_from_row(row, row.available_floor)
    _remember(conn, key, account)
    return account


def _validate_new(owner_type: str, owner_id: str, purpose: str, currency: str, constraint: Constraint,
                  credit_limit: int | None, shard_count: int) -> None:
    if not _NAME_RE.match(owner_type) or not _NAME_RE.match(purpose):
        raise LedgerError("owner_type and purpose are lower_snake_case names of at most 32 chars")
    if not isinstance(owner_id, str) or not owner_id or len(owner_id) > 64:
        raise LedgerError("owner_id must be a non-empty string of at most 64 chars")
    if not CURRENCY_RE.match(currency or ""):
        raise LedgerError(f"bad currency {currency!r}")
    if type(shard_count) is not int or not 1 <= shard_count <= HOT_SHARDS_MAX:
        raise LedgerError(f"shard_count must be an int in 1..{HOT_SHARDS_MAX}")
    if shard_count > 1 and constraint is not Constraint.NONE:
        # A floor is a property of the whole balance; spread over shards it could not be checked on one row.
        raise LedgerError("only unconstrained accounts can be sharded")
    if constraint is Constraint.CREDIT_LIMIT:
        _validate_limit(credit_limit)
    elif credit_limit is not None:
        raise LedgerError("credit_limit is only for credit_limit accounts")


def _validate_limit(limit: object) -> int:
    if type(limit) is not int or not 0 <= limit <= AMOUNT_MAX:
        raise InvalidLeg(f"credit limit must be an int in 0..{AMOUNT_MAX}")
    return limit


def _floor_for(constraint: Constraint, credit_limit: int | None) -> int | None:
    if constraint is Constraint.NON_NEGATIVE:
        return 0
    if constraint is Constraint.CREDIT_LIMIT:
        return -(credit_limit or 0)
    return None


def get_or_create_account(conn: Connection, owner_type: str, owner_id: str, purpose: str, currency: str, *,
                          normal_side: NormalSide | str, constraint: Constraint | str = Constraint.NONE,
                          credit_limit: int | None = None, shard_count: int = 1,
                          at: datetime | None = None) -> Account:
    """The account for (owner_type, owner_id, purpose, currency), created if missing.

    Safe when many transactions race to create the same account: INSERT ... ON CONFLICT DO NOTHING
    on the unique key, then read it back (PostgreSQL makes the loser wait for the winner's commit).
    An existing account whose normal side, constraint or shard count differ raises AccountConflict;
    an existing credit limit is left alone (change it with `set_credit_limit`).
    """
    side, kind = NormalSide(normal_side), Constraint(constraint)
    if kind is Constraint.CREDIT_LIMIT and credit_limit is None:
        credit_limit = 0
    _validate_new(owner_type, owner_id, purpose, currency, kind, credit_limit, shard_count)
    existing = find_account(conn, owner_type, owner_id, purpose, currency)
    if existing is None:
        account_id = new_id("acc")
        stmt = dialect_insert(conn, ledger_accounts).values(
            account_id=account_id, owner_type=owner_type, owner_id=owner_id, purpose=purpose, currency=currency,
            normal_side=side.value, constraint_kind=kind.value, shard_count=shard_count,
            created_at=at or datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=["owner_type", "owner_id", "purpose", "currency"])
        if conn.execute(stmt.returning(ledger_accounts.c.account_id)).first() is not None:
            _created_here(conn).add((owner_type, owner_id, purpose, currency))
            floor = _floor_for(kind, credit_limit)
            conn.execute(ledger_balances.insert(), [
                {"account_id": account_id, "shard": s, "posted": 0, "pending_debits": 0, "pending_credits": 0,
                 "available": 0, "available_floor": floor} for s in range(shard_count)])
            return Account(account_id, owner_type, owner_id, purpose, currency, side, kind, shard_count,
                           credit_limit=credit_limit if kind is Constraint.CREDIT_LIMIT else None)
        existing = find_account(conn, owner_type, owner_id, purpose, currency)
        require(existing is not None, "a conflicting insert means the row exists")
    if (existing.normal_side, existing.constraint, existing.shard_count) != (side, kind, shard_count):
        raise AccountConflict(
            f"account {existing.account_id} exists as {existing.normal_side}/{existing.constraint}/"
            f"{existing.shard_count} shard(s), asked for {side}/{kind}/{shard_count}",
            account_id=existing.account_id)
    return existing


ACCOUNTS_PER_STATEMENT_MAX = 1000


def get_or_create_accounts(conn: Connection, owner_type: str, owner_ids: Iterable[str], purpose: str, currency: str,
                           *, normal_side: NormalSide, constraint: Constraint, at: datetime) -> dict[str, str]:
    """owner_id -> account_id for many owners of one kind of plain account (one shard, no credit
    limit), read in bulk; the missing ones are created in bulk (INSERT ... ON CONFLICT DO NOTHING,
    then read back), so thousands of owners cost a few statements, not thousands of round trips."""
    ids = sorted(set(owner_ids))
    la = ledger_accounts.c
    side, kind = NormalSide(normal_side), Constraint(constraint)
    require(kind is not Constraint.CREDIT_LIMIT, "credit-limit accounts are created one by one")
    out: dict[str, str] = {}
    pg = conn.dialect.name == "postgresql"
    per_statement = max(len(ids), 1) if pg else ACCOUNTS_PER_STATEMENT_MAX
    chunks = [ids[i:i + per_statement] for i in range(0, len(ids), per_statement)]

    def read(part: list[str]) -> None:
        if pg:  # one statement over an array: index probes, whatever the table's statistics say
            with conn.connection.driver_connection.cursor() as cur:  # the caller's transaction
                cur.execute(_PG_READ_ACCOUNTS, {"owner_type": owner_type, "purpose": purpose, "currency": currency,
                                                "owners": array_literal(part)}, prepare=False)
                out.update(dict(cur.fetchall()))
            return
        out.update(dict(conn.execute(select(la.owner_id, la.account_id).where(
            la.owner_type == owner_type, la.purpose == purpose, la.currency == currency,
            la.owner_id.in_(part))).all()))

    for part in chunks:
        read(part)
        missing = [owner_id for owner_id in part if owner_id not in out]
        if not missing:
            continue
        for owner_id in missing:
            _validate_new(owner_type, owner_id, purpose, currency, kind, None, 1)
        rows = [{"account_id": fast_id("acc"), "owner_type": owner_type, "owner_id": owner_id, "purpose": purpose,
                 "currency": currency, "normal_side": side.value, "constraint_kind": kind.value, "shard_count": 1,
                 "created_at": at} for owner_id in missing]
        made = _insert_accounts(conn, rows)
        _created_here(conn).update((owner_type, r["owner_id"], purpose, currency) for r in rows
                                   if r["account_id"] in made)
        floor = _floor_for(kind, None)
        insert_rows(conn, ledger_balances, [
            {"account_id": r["account_id"], "shard": 0, "posted": 0, "pending_debits": 0, "pending_credits": 0,
             "available": 0, "available_floor": floor} for r in rows if r["account_id"] in made])
        out.update({r["owner_id"]: r["account_id"] for r in rows if r["account_id"] in made})
        with _meta_lock:  # the poster will need these facts next: no read-back of what we just wrote
            for r in rows:
                if r["account_id"] in made:
                    _meta_cache[r["account_id"]] = AccountMeta(r["account_id"], currency, side, kind, 1)
        lost = [r["owner_id"] for r in rows if r["account_id"] not in made]
        if lost:  # created by a concurrent transaction meanwhile: read theirs
            read(lost)
    return out


# One probe of the unique index per owner, whatever the planner believes of the table's size: an
# IN list of 1,000 parameters was planned as a scan of every account of the owner type with a
# 1,000-way filter (1-1.5 s per call at 20,000 receivers), and a plain join to the array (a
# LATERAL without LIMIT is flattened into one), prepared while the table was small, as the array
# scanned once per account (13-40 s). LIMIT 1 keeps the probe per owner; the statement is never
# prepared (`prepare=False`), so each call is planned on the table as it is.
_PG_READ_ACCOUNTS = """
SELECT u.owner_id, a.account_id
FROM unnest(CAST(%(owners)s AS text[])) AS u(owner_id)
CROSS JOIN LATERAL (
  SELECT account_id FROM ledger_accounts
  WHERE owner_type = %(owner_type)s AND owner_id = u.owner_id AND purpose = %(purpose)s
    AND currency = %(currency)s
  LIMIT 1
) a
"""


_PG_INSERT_ACCOUNTS = text("""
INSERT INTO ledger_accounts (account_id, owner_type, owner_id, purpose, currency, normal_side, constraint_kind,
                             shard_count, created_at)
SELECT a.account_id, :owner_type, a.owner_id, :purpose, :currency, :normal_side, :constraint_kind, 1, :at
FROM unnest(CAST(:ids AS text[]), CAST(:owners AS text[])) AS a(account_id, owner_id)
ON CONFLICT (owner_type, owner_id, purpose, currency) DO NOTHING
RETURNING account_id
""")


def _insert_accounts(conn: Connection, rows: list[dict]) -> set[str]:
    """Insert one-shard accounts of one kind (ON CONFLICT DO NOTHING); the ids actually inserted.
    PostgreSQL: one fixed statement over arrays; SQLite (one writer): an executemany, then a read."""
    first = rows[0]
    if conn.dialect.name == "postgresql":
        return set(conn.execute(_PG_INSERT_ACCOUNTS, {
            "owner_type": first["owner_type"], "purpose": first["purpose"], "currency": first["currency"],
            "normal_side": first["normal_side"], "constraint_kind": first["constraint_kind"], "at": first["created_at"],
            "ids": array_literal([r["account_id"] for r in rows]),
            "owners": array_literal([r["owner_id"] for r in rows])}).scalars())
    conn.execute(dialect_insert(conn, ledger_accounts).on_conflict_do_nothing(
        index_elements=["owner_type", "owner_id", "purpose", "currency"]), rows)
    la = ledger_accounts.c
    ours = {r["account_id"] for r in rows}
    return {a for a in conn.execute(select(la.account_id).where(la.account_id.in_(sorted(ours)))).scalars()}


def set_credit_limit(conn: Connection, account_id: str, limit_minor: int) -> Account:
    """Change a credit_limit account's limit; refuses (writing nothing) a limit below what is used.

    "Used" counts pending holds: the check is `available >= -limit` on the single balance row, in
    one conditional UPDATE, so it cannot race a concurrent debit.
    """
    _validate_limit(limit_minor)
    account = get_account(conn, account_id)
    if account.constraint is not Constraint.CREDIT_LIMIT:
        raise LedgerError(f"account {account_id} has no credit limit ({account.constraint})")
    b = ledger_balances.c
    result = conn.execute(update(ledger_balances)
                          .where(b.account_id == account_id, b.shard == 0, b.available >= -limit_minor)
                          .values(available_floor=-limit_minor))
    if result.rowcount != 1:
        available = conn.execute(select(b.available).where(b.account_id == account_id, b.shard == 0)).scalar_one()
        raise CreditLimitBelowUsed(f"account {account_id}: {-min(available, 0)} is used, limit {limit_minor} "
                                   "would be below it", account_id=account_id, available=available)
    return get_account(conn, account_id)
