"""The posting API: everything that changes the books. Only `piaohao.books` imports this module
(an import contract enforces it), so every movement of money has one home per flow.

It re-exports the read surface too, so a flow needs one import.
"""

from piaohao.ledger import *  # noqa: F403  (the read surface and leg constructors)
from piaohao.ledger import __all__ as _read_all
from piaohao.ledger.accounts import get_or_create_account, get_or_create_accounts, set_credit_limit
from piaohao.ledger.holds import post_hold, reserve, void_expired_holds, void_hold
from piaohao.ledger.posting import post_entries, post_entry, transfer

__all__ = [*_read_all, "get_or_create_account", "get_or_create_accounts", "post_entries", "post_entry", "post_hold",
           "reserve", "set_credit_limit", "transfer", "void_expired_holds", "void_hold"]
