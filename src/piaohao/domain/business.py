"""States of the member and merchant business types: top-ups, transfers, withdrawals, payouts.

Every status column of `piaohao.db.schema_members` changes only through these tables; a
change is written as a conditional UPDATE whose WHERE clause is `sources(event)`, so a late or
duplicated answer finds the row already final and changes nothing.
"""

from __future__ import annotations

from piaohao.domain.states import StateMachine

PENDING, PROCESSING, SUCCEEDED, FAILED = "pending", "processing", "succeeded", "failed"

# A top-up waits for the member to pay its internal trade on the cashier.
TOPUP_STATES = StateMachine(
    "topup",
    {
        (PENDING, "pay"): SUCCEEDED,  # the trade was paid: the amount is on the member's balance
        (PENDING, "fail"): FAILED,  # the trade closed or expired unpaid
    },
    final={SUCCEEDED, FAILED},
)

# A transfer is one ledger entry in the transaction that creates it: it is born succeeded.
NEW = "new"
TRANSFER_STATES = StateMachine("transfer", {(NEW, "create"): SUCCEEDED}, final={SUCCEEDED})

# Withdrawals and payouts (one table, one executor): the money is set aside when created, then
# paid out through the channel. An unknown outcome stays processing (retried, then parked for an
# operator): it is never read as a failure.
DISBURSEMENT_STATES = StateMachine(
    "disbursement",
    {
        (PROCESSING, "succeed"): SUCCEEDED,  # the bank paid: the money leaves the books
        (PROCESSING, "fail"): FAILED,  # the bank refused for good: the money comes back
        (PROCESSING, "retry"): PROCESSING,  # outcome unknown or pending: ask again later
        (PROCESSING, "park"): PROCESSING,  # tries exhausted: an alert, manual handling
    },
    final={SUCCEEDED, FAILED},
)

WITHDRAWAL, PAYOUT = "withdrawal", "payout"
