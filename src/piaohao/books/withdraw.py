"""Withdraw: a member's balance out to their bank account.

    created                 member_balance  ->  member_frozen       key ("withdrawal", no, "freeze")
    the bank paid           member_frozen   ->  channel_clearing    key ("withdrawal", no, "pay_out")
    the bank refused        member_frozen   ->  member_balance      key ("withdrawal", no, "unfreeze")

Raises `InsufficientFunds` on freeze (nothing written) when the balance is short.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["freeze", "pay_out", "unfreeze"]


def freeze(conn: Connection, *, withdrawal_no: str, member_id: str, currency: str, amount: int,
           at: datetime) -> None:
    balance = chart.member_balance(conn, member_id, currency)
    frozen = chart.member_frozen(conn, member_id, currency)
    ledger.transfer(conn, ("withdrawal", withdrawal_no, "freeze"), balance.account_id, frozen.account_id, amount,
                    description=f"withdrawal {withdrawal_no} frozen", at=at)


def pay_out(conn: Connection, *, withdrawal_no: str, member_id: str, channel: str, currency: str, amount: int,
            at: datetime) -> None:
    frozen = chart.member_frozen(conn, member_id, currency)
    clearing = chart.channel_clearing(conn, channel, currency)
    ledger.transfer(conn, ("withdrawal", withdrawal_no, "pay_out"), frozen.account_id, clearing.account_id, amount,
                    description=f"withdrawal {withdrawal_no} paid by the bank", at=at)


def unfreeze(conn: Connection, *, withdrawal_no: str, member_id: str, currency: str, amount: int,
             at: datetime) -> None:
    frozen = chart.member_frozen(conn, member_id, currency)
    balance = chart.member_balance(conn, member_id, currency)
    ledger.transfer(conn, ("withdrawal", withdrawal_no, "unfreeze"), frozen.account_id, balance.account_id, amount,
                    description=f"withdrawal {withdrawal_no} refused by the bank", at=at)
