"""Paying with the platform's own methods: a member's balance, coins or credit line.

    alone (all parts at once)     member_<method>  ->  merchant_pending_settlement   key ("trade", no, "pay:<method>")
    beside a channel part         the same legs as a pending hold while the channel collects:
                                  reserve  key ("trade", no, "hold:<method>:<attempt>")
                                  spent with the channel's success (post), or released (void)

Raises `InsufficientFunds` (nothing written) when the member's account cannot cover a part.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["MEMBER_ACCOUNT", "hold", "pay_directly", "release", "spend"]

MEMBER_ACCOUNT = {"balance": chart.member_balance, "coins": chart.member_coins, "credit": chart.member_credit}


def _source(conn: Connection, method: str, member_id: str, currency: str):
    return MEMBER_ACCOUNT[method](conn, member_id, currency)


def pay_directly(conn: Connection, *, trade_no: str, method: str, member_id: str, merchant_id: str,
                 currency: str, amount: int, at: datetime) -> None:
    source = _source(conn, method, member_id, currency)
    pending = chart.merchant_pending_settlement(conn, merchant_id, currency)
    ledger.transfer(conn, ("trade", trade_no, f"pay:{method}"), source.account_id, pending.account_id, amount,
                    description=f"trade {trade_no} paid", at=at)


def hold(conn: Connection, *, trade_no: str, method: str, attempt: str, member_id: str, merchant_id: str,
         currency: str, amount: int, at: datetime) -> str:
    """Hold a part while the channel collects the rest; returns the hold id."""
    source = _source(conn, method, member_id, currency)
    pending = chart.merchant_pending_settlement(conn, merchant_id, currency)
    return ledger.reserve(conn, ("trade", trade_no, f"hold:{method}:{attempt}"),
                          [ledger.debit(source.account_id, amount), ledger.credit(pending.account_id, amount)],
                          description=f"trade {trade_no} held while the channel collects", at=at).hold_id


def spend(conn: Connection, hold_id: str, *, trade_no: str, at: datetime) -> None:
    ledger.post_hold(conn, hold_id, description=f"trade {trade_no} paid", at=at)


def release(conn: Connection, hold_id: str, *, at: datetime) -> None:
    ledger.void_hold(conn, hold_id, at=at)
