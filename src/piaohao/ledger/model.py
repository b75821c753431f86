"""Value types of the ledger and the validation of legs (pure Python, no database)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from piaohao.kernel.errors import InvalidLeg, LedgerError, UnbalancedEntry
from piaohao.kernel.ids import new_id
from piaohao.kernel.money import AMOUNT_MAX

SOURCE_FIELD_MAX_CHARS = {"source_type": 32, "source_id": 64, "operation": 64}


class NormalSide(StrEnum):
    DEBIT = "debit"  # assets, expenses: debits increase the balance
    CREDIT = "credit"  # liabilities, income: credits increase the balance

    @property
    def sign(self) -> int:
        """Multiply a signed leg amount (debit > 0) by this to get the change in normal-side terms."""
        return 1 if self is NormalSide.DEBIT else -1


class Constraint(StrEnum):
    NONE = "none"
    NON_NEGATIVE = "non_negative"
    CREDIT_LIMIT = "credit_limit"


@dataclass(frozen=True)
class Account:
    account_id: str
    owner_type: str
    owner_id: str
    purpose: str
    currency: str
    normal_side: NormalSide
    constraint: Constraint
    shard_count: int
    credit_limit: int | None = None  # current limit (credit_limit accounts only)


@dataclass(frozen=True)
class Leg:
    """One line of an entry. `amount` is signed minor units: positive debits, negative credits."""

    account_id: str
    amount: int


def debit(account_id: str, amount: int) -> Leg:
    """A debit leg of `amount` (> 0)."""
    return Leg(account_id, _positive(amount))


def credit(account_id: str, amount: int) -> Leg:
    """A credit leg of `amount` (> 0): stored as a negative amount."""
    return Leg(account_id, -_positive(amount))


def _positive(amount: object) -> int:
    if validate_amount(amount) < 0:
        raise InvalidLeg("debit()/credit() take a positive amount; the side gives the sign")
    return amount  # type: ignore[return-value]


@dataclass(frozen=True)
class EntryKey:
    """The idempotency key: the business record that caused the entry and what it did to it."""

    source_type: str
    source_id: str
    operation: str

    def __post_init__(self) -> None:
        for name, limit in SOURCE_FIELD_MAX_CHARS.items():
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > limit:
                raise InvalidLeg(f"entry key {name} must be a non-empty string of at most {limit} chars")


@dataclass(frozen=True)
class NewEntry:
    """An entry to post in a batch (`post_entries`)."""

    key: EntryKey
    legs: Sequence[Leg]
    description: str | None = None


@dataclass(frozen=True)
class Entry:
    entry_id: str
    key: EntryKey
    kind: str  # posted | pending
    legs: tuple[Leg, ...]
    created_at: datetime
    description: str | None = None
    hold_id: str | None = None
    replayed: bool = False  # True when this call found the entry already posted


@dataclass(frozen=True)
class Hold:
    hold_id: str  # also the entry_id of its pending entry
    status: str  # pending | posted | voided | expired
    legs: tuple[Leg, ...]
    expires_at: datetime | None
    resolved_entry_id: str | None
    replayed: bool = False


@dataclass(frozen=True)
class Balance:
    """In the account's normal-side terms; pending sums are magnitudes of open holds' legs."""

    posted: int
    pending_debits: int
    pending_credits: int
    available: int  # posted minus the pending amounts that move against the normal side


@dataclass(frozen=True)
class StatementLine:
    leg_id: int
    entry_id: str
    key: EntryKey
    created_at: datetime
    debit: int
    credit: int
    change: int  # in normal-side terms
    running_balance: int
    description: str | None


def validate_amount(amount: object) -> int:
    if type(amount) is not int:
        raise InvalidLeg(f"amount must be an int (not {type(amount).__name__})")
    if amount == 0:
        raise InvalidLeg("amount must not be zero")
    if abs(amount) > AMOUNT_MAX:
        raise InvalidLeg(f"amount magnitude must be at most {AMOUNT_MAX}")
    return amount


def validate_legs(legs: Iterable[Leg]) -> tuple[Leg, ...]:
    """Shape checks that need no account data; the per-currency balance is checked by the poster."""
    out = tuple(legs)
    for leg in out:
        if not isinstance(leg, Leg) or not isinstance(leg.account_id, str) or not leg.account_id:
            raise InvalidLeg(f"not a leg: {leg!r}")
        validate_amount(leg.amount)
    if len(out) < 2:
        raise UnbalancedEntry("an entry needs at least two legs")
    return out


def check_balanced(legs: Sequence[Leg], currency_of: dict[str, str]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        totals[currency_of[leg.account_id]] += leg.amount
    off = {c: t for c, t in totals.items() if t != 0}
    if off:
        raise UnbalancedEntry(f"legs do not sum to zero: {off}", totals=off)


def legs_signature(legs: Iterable[Leg]) -> list[tuple[str, int]]:
    """Order-independent form of a set of legs, to compare a replay with the original."""
    return sorted((leg.account_id, leg.amount) for leg in legs)


# The ledger's ids are the platform's ids (kernel.ids.new_id, made cheap for the ledger's batches).
fast_id = new_id


def instant(when: datetime | None, name: str = "at") -> datetime:
    """`when`, or now; refuses naive datetimes (PostgreSQL would read them in the session's zone)."""
    if when is None:
        return datetime.now(UTC)
    if not isinstance(when, datetime) or when.tzinfo is None:
        raise LedgerError(f"{name} must be a timezone-aware datetime")
    return when
