"""Clearing: a paid trade's orders move on to their sellers (合併支付 with sub-merchants).

    merchant_pending_settlement  ->  sub_merchant_pending_settlement (one leg per seller)
    key ("trade", trade_no, "clear_orders")

Runs in the transaction that collected the payment, right after `collect.to_merchant` (or the own
methods' payment), so the merchant never holds its sellers' money as its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.books import chart
from piaohao.ledger import write as ledger

__all__ = ["orders_to_sellers"]


def orders_to_sellers(conn: Connection, *, trade_no: str, merchant_id: str, currency: str,
                      per_seller: dict[str, int], at: datetime) -> None:
    source = chart.merchant_pending_settlement(conn, merchant_id, currency)
    legs = [ledger.debit(source.account_id, sum(per_seller.values()))]
    for seller_id in sorted(per_seller):
        target = chart.seller_pending(conn, chart.SUB_MERCHANT, seller_id, currency)
        legs.append(ledger.credit(target.account_id, per_seller[seller_id]))
    ledger.post_entry(conn, ("trade", trade_no, "clear_orders"), legs,
                      description=f"trade {trade_no}: orders to their sellers' pending settlement", at=at)
