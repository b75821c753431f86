"""The ledger's tables, on the platform's shared `metadata` (migration 0002 creates them).

Why this shape:
- `ledger_accounts` holds only immutable facts about an account (owner, purpose, currency, normal
  side, constraint kind, shard count), so they can be cached in-process.
- `ledger_balances` holds the mutable figures, one row per shard of an account. Ordinary accounts
  have one shard; a hot account (the channel clearing account every payment touches) has several
  so concurrent postings lock different rows. The floor a constrained account may not go below
  lives on the same row as `available`, so the check and a limit change are atomic on one row;
  a CHECK constraint backs it up should the code ever be wrong.
- `ledger_entries` / `ledger_legs` are append-only. The idempotency key is a unique constraint.
- `ledger_holds` is the state of a two-phase (pending) entry: the only rows the ledger updates
  apart from balances.
All money is BigInteger minor units; legs are signed (debit positive, credit negative).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from piaohao.db.metadata import UTCDateTime, metadata

_ID = String(40)

ledger_accounts = Table(
    "ledger_accounts", metadata,
    Column("account_id", _ID, primary_key=True),
    Column("owner_type", String(24), nullable=False),
    Column("owner_id", String(64), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("normal_side", String(6), nullable=False),  # debit | credit
    Column("constraint_kind", String(16), nullable=False),  # none | non_negative | credit_limit
    Column("shard_count", Integer, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("owner_type", "owner_id", "purpose", "currency",
                     name="uq_ledger_accounts_owner_purpose_currency"),
    CheckConstraint("normal_side IN ('debit', 'credit')", name="ck_ledger_accounts_normal_side"),
    CheckConstraint("constraint_kind IN ('none', 'non_negative', 'credit_limit')",
                    name="ck_ledger_accounts_constraint_kind"),
    CheckConstraint("shard_count >= 1", name="ck_ledger_accounts_shard_count"),
)

ledger_balances = Table(
    "ledger_balances", metadata,
    Column("account_id", _ID, ForeignKey("ledger_accounts.account_id"), primary_key=True),
    Column("shard", Integer, primary_key=True),
    # All in the account's normal-side terms except the pending sums, which are magnitudes.
    Column("posted", BigInteger, nullable=False, server_default="0"),
    Column("pending_debits", BigInteger, nullable=False, server_default="0"),
    Column("pending_credits", BigInteger, nullable=False, server_default="0"),
    # posted minus the pending amounts that move against the normal side (kept, not derived,
    # so the floor check is one comparison on one row).
    Column("available", BigInteger, nullable=False, server_default="0"),
    # None: unconstrained; 0: non_negative; -limit: credit_limit.
    Column("available_floor", BigInteger, nullable=True),
    CheckConstraint("available_floor IS NULL OR available >= available_floor",
                    name="ck_ledger_balances_available_floor"),
    CheckConstraint("pending_debits >= 0 AND pending_credits >= 0", name="ck_ledger_balances_pending"),
)

ledger_entries = Table(
    "ledger_entries", metadata,
    Column("entry_id", _ID, primary_key=True),
    Column("source_type", String(32), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # posted | pending
    Column("hold_id", _ID, nullable=True),  # for the entry that posts a hold
    Column("description", String(256), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source_type", "source_id", "operation", name="uq_ledger_entries_source_operation"),
    CheckConstraint("kind IN ('posted', 'pending')", name="ck_ledger_entries_kind"),
)

ledger_legs = Table(
    "ledger_legs", metadata,
    Column("leg_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("entry_id", _ID, ForeignKey("ledger_entries.entry_id"), nullable=False),
    Column("account_id", _ID, ForeignKey("ledger_accounts.account_id"), nullable=False),
    Column("shard", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),  # signed: debit > 0, credit < 0
    Column("currency", String(3), nullable=False),
    Column("is_pending", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("amount <> 0", name="ck_ledger_legs_amount_nonzero"),
    Index("ix_ledger_legs_entry_id", "entry_id"),
    Index("ix_ledger_legs_account_id_created_at", "account_id", "created_at"),
)

ledger_holds = Table(
    "ledger_holds", metadata,
    Column("hold_id", _ID, ForeignKey("ledger_entries.entry_id"), primary_key=True),
    Column("status", String(8), nullable=False),  # pending | posted | voided | expired
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("resolved_entry_id", _ID, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime(), nullable=True),
    CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name="ck_ledger_holds_status"),
    Index("ix_ledger_holds_status_expires_at", "status", "expires_at"),
)
