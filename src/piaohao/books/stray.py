"""Stray: money a channel collected that no trade could take (paid after close, paid twice, a
partial payment). It went to `platform_suspense` on collection (`collect.to_suspense`); it goes
back to the buyer through the channel.

    the channel returned it         platform_suspense  ->  channel_clearing    key ("refund", refund_no, op)
    a merchant refund paid late,    platform_suspense  ->  channel_clearing    key ("refund", refund_no,
    that no trade can take back                                                      "late_to_suspense")
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["carried_in_suspense", "late_refund_key", "returned"]


def late_refund_key(refund_no: str) -> tuple[str, str, str]:
    return ("refund", refund_no, "late_to_suspense")


def returned(conn: Connection, *, refund_no: str, operation: str, channel: str, currency: str, amount: int,
             at: datetime) -> None:
    suspense = chart.platform_suspense(conn, currency)
    clearing = chart.channel_clearing(conn, channel, currency)
    ledger.transfer(conn, ("refund", refund_no, operation), suspense.account_id, clearing.account_id, amount,
                    description=f"refund {refund_no} paid back by the channel", at=at)


def carried_in_suspense(conn: Connection, *, refund_no: str, channel: str, currency: str, amount: int,
                        at: datetime) -> bool:
    """A refund the channel paid after we failed it, that the trade can no longer take back: the
    platform carries it until recovered. False when it already was (a replay)."""
    if ledger.get_entry(conn, late_refund_key(refund_no)) is not None:
        return False
    suspense = chart.platform_suspense(conn, currency)
    clearing = chart.channel_clearing(conn, channel, currency)
    ledger.transfer(conn, late_refund_key(refund_no), suspense.account_id, clearing.account_id, amount,
                    description=f"refund {refund_no} paid after it failed: to be recovered", at=at)
    return True
