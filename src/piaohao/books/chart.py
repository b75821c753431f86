"""The chart of accounts: the standard accounts, each with its owner, normal side and constraint.

Every flow in the platform goes through these constructors, so an account's side and constraint
are decided once, here (docs/ledger.md has the table and the flows). Each constructor is
`get_or_create_account` with the right arguments: cheap when the account exists (no statement at
all once a committed account has been read: `ledger.accounts.find_account` caches its immutable
facts), safe when two transactions create it at once.

Sides follow the platform's own books: money the platform holds or is owed is an asset (debit
normal); money it owes to merchants and members is a liability (credit normal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from piaohao.domain.splits import PLATFORM_RECEIVER
from piaohao.ledger.model import Account, Constraint, NormalSide
from piaohao.ledger.write import find_account, get_or_create_account

PLATFORM_OWNER_ID = "-"
HOT_ACCOUNT_SHARDS = 16  # see docs/ledger.md "Hot accounts" for the measurement behind it


@dataclass(frozen=True)
class AccountSpec:
    owner_type: str
    purpose: str
    normal_side: NormalSide
    constraint: Constraint
    shard_count: int = 1


D, C = NormalSide.DEBIT, NormalSide.CREDIT
STANDARD: dict[str, AccountSpec] = {
    "channel_clearing": AccountSpec("channel", "clearing", D, Constraint.NONE, HOT_ACCOUNT_SHARDS),
    "platform_reserve": AccountSpec("platform", "reserve", D, Constraint.NONE),
    "platform_fee_income": AccountSpec("platform", "fee_income", C, Constraint.NONE),
    "platform_marketing_expense": AccountSpec("platform", "marketing_expense", D, Constraint.NONE),
    "platform_suspense": AccountSpec("platform", "suspense", D, Constraint.NONE),
    "merchant_pending_settlement": AccountSpec("merchant", "pending_settlement", C, Constraint.NON_NEGATIVE),
    "merchant_settled": AccountSpec("merchant", "settled", C, Constraint.NON_NEGATIVE),
    "sub_merchant_pending_settlement": AccountSpec("sub_merchant", "pending_settlement", C, Constraint.NON_NEGATIVE),
    "sub_merchant_settled": AccountSpec("sub_merchant", "settled", C, Constraint.NON_NEGATIVE),
    "receiver_settled": AccountSpec("receiver", "settled", C, Constraint.NON_NEGATIVE),
    "member_balance": AccountSpec("member", "balance", C, Constraint.NON_NEGATIVE),
    "member_coins": AccountSpec("member", "coins", C, Constraint.NON_NEGATIVE),
    "member_credit": AccountSpec("member", "credit", C, Constraint.CREDIT_LIMIT),
    "member_frozen": AccountSpec("member", "frozen", C, Constraint.NON_NEGATIVE),
}


def standard_account(conn: Connection, name: str, owner_id: str, currency: str, *,
                     credit_limit: int | None = None, at: datetime | None = None) -> Account:
    """The standard account `name` (a key of STANDARD) for `owner_id`, created if missing."""
    spec = STANDARD[name]
    return get_or_create_account(conn, spec.owner_type, owner_id, spec.purpose, currency,
                                 normal_side=spec.normal_side, constraint=spec.constraint,
                                 credit_limit=credit_limit, shard_count=spec.shard_count, at=at)


def lookup(conn: Connection, name: str, owner_id: str, currency: str) -> Account | None:
    """The standard account if it exists (never creates)."""
    spec = STANDARD[name]
    return find_account(conn, spec.owner_type, owner_id, spec.purpose, currency)


def channel_clearing(conn: Connection, channel: str, currency: str) -> Account:
    """What the channel owes the platform for collected payments (hot: sharded)."""
    return standard_account(conn, "channel_clearing", channel, currency)


def platform_reserve(conn: Connection, currency: str) -> Account:
    return standard_account(conn, "platform_reserve", PLATFORM_OWNER_ID, currency)


def platform_fee_income(conn: Connection, currency: str) -> Account:
    return standard_account(conn, "platform_fee_income", PLATFORM_OWNER_ID, currency)


def platform_marketing_expense(conn: Connection, currency: str) -> Account:
    return standard_account(conn, "platform_marketing_expense", PLATFORM_OWNER_ID, currency)


def platform_suspense(conn: Connection, currency: str) -> Account:
    return standard_account(conn, "platform_suspense", PLATFORM_OWNER_ID, currency)


def merchant_pending_settlement(conn: Connection, merchant_id: str, currency: str) -> Account:
    return standard_account(conn, "merchant_pending_settlement", merchant_id, currency)


def merchant_settled(conn: Connection, merchant_id: str, currency: str) -> Account:
    return standard_account(conn, "merchant_settled", merchant_id, currency)


def member_balance(conn: Connection, member_id: str, currency: str) -> Account:
    return standard_account(conn, "member_balance", member_id, currency)


def member_coins(conn: Connection, member_id: str, currency: str) -> Account:
    return standard_account(conn, "member_coins", member_id, currency)


def member_credit(conn: Connection, member_id: str, currency: str, *, credit_limit: int = 0) -> Account:
    """A credit line: may go down to -limit. `credit_limit` applies on creation only (see set_credit_limit)."""
    return standard_account(conn, "member_credit", member_id, currency, credit_limit=credit_limit)


def member_frozen(conn: Connection, member_id: str, currency: str) -> Account:
    """Balance frozen by a withdrawal in flight (freeze -> payout, or unfreeze on failure)."""
    return standard_account(conn, "member_frozen", member_id, currency)


# --- sellers and split receivers --------------------------------------------------------------
SUB_MERCHANT, MERCHANT = "sub_merchant", "merchant"


def seller_pending(conn: Connection, seller_type: str, seller_id: str, currency: str) -> Account:
    name = "sub_merchant_pending_settlement" if seller_type == SUB_MERCHANT else "merchant_pending_settlement"
    return standard_account(conn, name, seller_id, currency)


def seller_settled(conn: Connection, seller_type: str, seller_id: str, currency: str) -> Account:
    name = "sub_merchant_settled" if seller_type == SUB_MERCHANT else "merchant_settled"
    return standard_account(conn, name, seller_id, currency)


def receiver_settled(conn: Connection, merchant_id: str, receiver_id: str, currency: str) -> Account:
    """A split receiver's settled account; "platform" is the merchant's own (its commission)."""
    if receiver_id == PLATFORM_RECEIVER:
        return merchant_settled(conn, merchant_id, currency)
    return standard_account(conn, "receiver_settled", receiver_id, currency)
