"""The double-entry ledger engine (capability 5): accounts, balanced idempotent entries, holds,
reading and checks. It knows nothing of trades, members or channels: `piaohao.books` (one module
per money flow) decides what moves where.

This package's own namespace is the **read** surface (balances, entries, statements, checks)
and the leg constructors. Everything that changes the books (posting, holds, account creation,
credit limits) is `piaohao.ledger.write`, which only `piaohao.books` may import (an import
contract enforces it). Every write function takes the caller's SQLAlchemy `Connection`, so a
business operation and its entries commit or roll back together (`Database.write`).
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
from piaohao.ledger.accounts import find_account, get_account
from piaohao.ledger.check import Violation, check
from piaohao.ledger.holds import get_hold
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
from piaohao.ledger.reading import (
    Statement,
    balance,
    entries_by_sources,
    entry_movements,
    get_entry,
    list_accounts,
    movements_by_keys,
    operation_movements,
    owner_figures,
    statement,
)

__all__ = [
    "Account", "AccountConflict", "AccountNotFound", "Balance", "Constraint", "CreditLimitBelowUsed", "Entry",
    "EntryKey", "EntryKeyConflict", "Hold", "HoldNotFound", "HoldNotPending", "InsufficientFunds", "InvalidLeg",
    "LedgerError", "Leg", "NewEntry", "NormalSide", "Statement", "StatementLine", "UnbalancedEntry", "Violation",
    "balance", "check", "credit", "debit", "entries_by_sources", "entry_movements", "find_account", "get_account",
    "get_entry", "get_hold", "list_accounts", "movements_by_keys", "operation_movements", "owner_figures", "statement",
]
