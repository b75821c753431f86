"""Collect: a channel payment's money, from the channel's clearing account to its owner.

    succeeded, trade payable      channel_clearing  ->  merchant_pending_settlement   (then `clearing`)
    succeeded, top-up             channel_clearing  ->  member_balance                 (`topup`)
    succeeded, nothing payable    channel_clearing  ->  platform_suspense              (then `stray`)

One payment's collection has one entry key, `payment_key`, whichever way it goes: a second
application of the same success is a replay, never a second credit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["payment_key", "to_merchant", "to_suspense"]


def payment_key(payment_no: str) -> tuple[str, str, str]:
    return ("payment", payment_no, "succeed")


def to_merchant(conn: Connection, *, payment_no: str, channel: str, merchant_id: str, currency: str, amount: int,
                trade_no: str, at: datetime) -> None:
    clearing = chart.channel_clearing(conn, channel, currency)
    pending = chart.merchant_pending_settlement(conn, merchant_id, currency)
    ledger.transfer(conn, payment_key(payment_no), clearing.account_id, pending.account_id, amount,
                    description=f"trade {trade_no} paid", at=at)


def to_suspense(conn: Connection, *, payment_no: str, channel: str, currency: str, amount: int, at: datetime,
                why: str = "paid without a payable trade: to be refunded") -> None:
    """The channel holds a buyer's money that belongs to nobody's sale: park it until refunded."""
    clearing = chart.channel_clearing(conn, channel, currency)
    suspense = chart.platform_suspense(conn, currency)
    ledger.transfer(conn, payment_key(payment_no), clearing.account_id, suspense.account_id, amount,
                    description=why, at=at)
