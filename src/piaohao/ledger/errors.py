"""Ledger errors. All derive from `LedgerError` (a `PiaohaoError`), so the API maps them in one place.

When a posting function raises, it has written nothing in the caller's transaction (see
`piaohao.ledger.posting` for how), so a caller may catch the error and carry on.
"""

from __future__ import annotations

from piaohao.errors import PiaohaoError


class LedgerError(PiaohaoError):
    status, code = 400, "LEDGER_ERROR"


class InvalidLeg(LedgerError):
    """A leg's amount is not an int, is a bool, is zero, or exceeds 10^15 in magnitude; or bad shape."""

    code = "INVALID_LEG"


class UnbalancedEntry(LedgerError):
    """The legs of an entry do not sum to zero in some currency, or there are fewer than two."""

    code = "UNBALANCED_ENTRY"


class AccountNotFound(LedgerError):
    status, code = 404, "ACCOUNT_NOT_FOUND"


class AccountConflict(LedgerError):
    """`get_or_create_account` found the account with a different normal side / constraint / shards."""

    status, code = 409, "ACCOUNT_CONFLICT"


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for an entry with different legs (or kind)."""

    status, code = 409, "IDEMPOTENCY_CONFLICT"


class InsufficientFunds(LedgerError):
    """A constrained account would go below its floor (0, or -credit_limit), counting pending holds."""

    status, code = 409, "INSUFFICIENT_FUNDS"

    def __init__(self, account_id: str, available: int, change: int, floor: int):
        super().__init__(
            f"account {account_id}: available {available} {change:+d} would go below {floor}",
            account_id=account_id, available=available, change=change, floor=floor)
        self.account_id = account_id
        self.available = available
        self.change = change
        self.floor = floor


class CreditLimitBelowUsed(LedgerError):
    status, code = 409, "CREDIT_LIMIT_BELOW_USED"


class HoldNotFound(LedgerError):
    status, code = 404, "HOLD_NOT_FOUND"


class HoldNotPending(LedgerError):
    """Posting a voided/expired hold, voiding a posted one, or posting one past its expiry."""

    status, code = 409, "HOLD_NOT_PENDING"

    def __init__(self, hold_id: str, status: str, message: str | None = None):
        super().__init__(message or f"hold {hold_id} is {status}", hold_id=hold_id, status=status)
        self.hold_id = hold_id
        self.hold_status = status
