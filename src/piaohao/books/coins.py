"""Coins and credit: what the merchant gives its members to spend.

    coins granted     platform_marketing_expense  ->  member_coins     key ("coin_grant", grant_no, "grant")
    credit line       no entry: the floor of member_credit moves (CreditLimitBelowUsed if below what is used)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["grant", "set_credit_limit"]


def grant(conn: Connection, *, grant_no: str, member_id: str, currency: str, amount: int, at: datetime) -> None:
    expense = chart.platform_marketing_expense(conn, currency)
    coins = chart.member_coins(conn, member_id, currency)
    ledger.transfer(conn, ("coin_grant", grant_no, "grant"), expense.account_id, coins.account_id, amount,
                    description=f"coins granted to {member_id}", at=at)


def set_credit_limit(conn: Connection, *, member_id: str, currency: str, limit: int) -> None:
    account = chart.member_credit(conn, member_id, currency)
    ledger.set_credit_limit(conn, account.account_id, limit)
