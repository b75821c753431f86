"""Transfer between two members of one merchant.

    member_balance (sender)  ->  member_balance (receiver)      key ("transfer", transfer_no, "move")

Raises `InsufficientFunds` (nothing written) when the sender's available balance is short.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["move"]


def move(conn: Connection, *, transfer_no: str, from_member_id: str, to_member_id: str, currency: str,
         amount: int, at: datetime) -> None:
    source = chart.member_balance(conn, from_member_id, currency)
    target = chart.member_balance(conn, to_member_id, currency)
    ledger.transfer(conn, ("transfer", transfer_no, "move"), source.account_id, target.account_id, amount,
                    description=f"transfer {transfer_no}", at=at)
