"""The double-entry ledger (capability 5): accounts, balanced idempotent entries, holds, checks.

No HTTP here: every write function takes the caller's SQLAlchemy `Connection`, so a business
operation and its entries commit or roll back together (use `Database.write`).
"""

from piaohao.kernel.errors import (
    AccountConflict,
    AccountNotFound,
    CreditLimitBelowUsed,
    EntryKeyConflict,
    HoldNotFound,
    HoldNotPending,
    InsufficientFunds,
    InvalidLeg,
    LedgerError,
    UnbalancedEntry,
)
from piaohao.ledger.accounts import find_account, get_account, get_or_create_account, set_credit_limit
from piaohao.ledger.check import Violation, check
from piaohao.ledger.holds import get_hold, post_hold, reserve, void_expired_holds, void_hold
from piaohao.ledger.model import (
    Account,
    Balance,
    Constraint,
    Entry,
    EntryKey,
    Hold,
    Leg,
    NewEntry,
    NormalSide,
    StatementLine,
    credit,
    debit,
)
from piaohao.ledger.posting import post_entries, post_entry, transfer
from piaohao.ledger.reading import Statement, balance, get_entry, statement

__all__ = [
    "Account", "AccountConflict", "AccountNotFound", "Balance", "Constraint", "CreditLimitBelowUsed", "Entry",
    "EntryKey", "Hold", "HoldNotFound", "HoldNotPending", "EntryKeyConflict", "InsufficientFunds", "InvalidLeg",
    "LedgerError", "Leg", "NewEntry", "NormalSide", "Statement", "StatementLine", "UnbalancedEntry", "Violation",
    "balance", "check", "credit", "debit", "find_account", "get_account", "get_entry", "get_hold",
    "get_or_create_account", "post_entries", "post_entry", "post_hold", "reserve", "set_credit_limit", "statement",
    "transfer", "void_expired_holds", "void_hold",
]
