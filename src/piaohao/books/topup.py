"""Top-up: a member's top-up trade was paid through a channel.

    channel_clearing  ->  member_balance      key ("topup", topup_no, "credit")
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["credit_member"]


def credit_member(conn: Connection, *, topup_no: str, payment_no: str, channel: str, member_id: str,
                  currency: str, amount: int, at: datetime) -> None:
    clearing = chart.channel_clearing(conn, channel, currency)
    balance = chart.member_balance(conn, member_id, currency)
    ledger.transfer(conn, ("topup", topup_no, "credit"), clearing.account_id, balance.account_id, amount,
                    description=f"top-up {topup_no} paid by {payment_no}", at=at)
