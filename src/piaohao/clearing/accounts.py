"""Which ledger accounts a seller or a split receiver uses (all standard chart accounts)."""

from __future__ import annotations

from sqlalchemy import Connection

from piaohao.clearing.splits import PLATFORM_RECEIVER
from piaohao.ledger import chart

SUB_MERCHANT, MERCHANT = "sub_merchant", "merchant"


def seller_pending(conn: Connection, seller_type: str, seller_id: str, currency: str):
    name = "sub_merchant_pending_settlement" if seller_type == SUB_MERCHANT else "merchant_pending_settlement"
    return chart.standard_account(conn, name, seller_id, currency)


def seller_settled(conn: Connection, seller_type: str, seller_id: str, currency: str):
    name = "sub_merchant_settled" if seller_type == SUB_MERCHANT else "merchant_settled"
    return chart.standard_account(conn, name, seller_id, currency)


def receiver_settled(conn: Connection, merchant_id: str, receiver_id: str, currency: str):
    """A split receiver's settled account; "platform" is the merchant's own (its commission)."""
    if receiver_id == PLATFORM_RECEIVER:
        return chart.merchant_settled(conn, merchant_id, currency)
    return chart.standard_account(conn, "receiver_settled", receiver_id, currency)
