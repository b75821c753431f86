"""Adjust: the correcting entry an operator posts to close a reconciliation finding (never an
edit of an entry). The difference the finding names moves between the channel's clearing
account and the platform's suspense account, where a person works it off:

    the channel holds more than our books say (channel_only, a bill amount above ours)
        channel_clearing  ->  platform_suspense        debit clearing, credit suspense
    our books hold more than the channel does (platform_only, a bill amount below ours)
        platform_suspense ->  channel_clearing         debit suspense, credit clearing
    key ("recon_finding", finding_id, "adjust"): one correction per finding
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.kernel.invariants import require
from piaohao.ledger import write as ledger

__all__ = ["Correction", "adjust_key", "correct"]


@dataclass(frozen=True)
class Correction:
    channel: str
    currency: str
    amount: int  # > 0: the channel owes us this much more than the books say; < 0: less


def adjust_key(finding_id: str) -> tuple[str, str, str]:
    return ("recon_finding", finding_id, "adjust")


def correct(conn: Connection, *, finding_id: str, correction: Correction, note: str, at: datetime) -> dict:
    """Post the correction; returns its key and legs (for the finding's audit record)."""
    require(type(correction.amount) is int and correction.amount != 0, "a correction moves a non-zero int amount")
    clearing = chart.channel_clearing(conn, correction.channel, correction.currency)
    suspense = chart.platform_suspense(conn, correction.currency)
    if correction.amount > 0:
        debit_id, credit_id, amount = clearing.account_id, suspense.account_id, correction.amount
    else:
        debit_id, credit_id, amount = suspense.account_id, clearing.account_id, -correction.amount
    entry = ledger.transfer(conn, adjust_key(finding_id), debit_id, credit_id, amount,
                            description=f"reconciliation finding {finding_id}: {note}", at=at)
    return {"entry_id": entry.entry_id, "key": list(adjust_key(finding_id)),
            "legs": [{"account_id": leg.account_id, "amount": leg.amount} for leg in entry.legs]}
