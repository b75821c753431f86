"""Payout: a merchant's (or sub-merchant's) settled money out to its bank account.

    created        hold:  merchant_settled | sub_merchant_settled  ->  channel_clearing
                   key ("payout", payout_no, "reserve")
    bank paid      the hold is posted;   bank refused: the hold is voided (the money is available again)

Raises `InsufficientFunds` on reserve (nothing written) when the settled money is short.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["paid", "refused", "reserve"]


def reserve(conn: Connection, *, payout_no: str, merchant_id: str, sub_merchant_id: str | None, channel: str,
            currency: str, amount: int, at: datetime) -> str:
    """Set the payout's amount aside while the bank pays; returns the hold id."""
    if sub_merchant_id is not None:
        settled = chart.standard_account(conn, "sub_merchant_settled", sub_merchant_id, currency)
    else:
        settled = chart.merchant_settled(conn, merchant_id, currency)
    clearing = chart.channel_clearing(conn, channel, currency)
    return ledger.reserve(conn, ("payout", payout_no, "reserve"),
                          [ledger.debit(settled.account_id, amount), ledger.credit(clearing.account_id, amount)],
                          description=f"payout {payout_no} in flight", at=at).hold_id


def paid(conn: Connection, hold_id: str, *, payout_no: str, at: datetime) -> None:
    ledger.post_hold(conn, hold_id, description=f"payout {payout_no} paid by the bank", at=at)


def refused(conn: Connection, hold_id: str, *, at: datetime) -> None:
    ledger.void_hold(conn, hold_id, at=at)
