"""`trade.*` events to the trade's merchant: the trade as GET shows it, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.views import load_components, load_orders, trade_view

__all__ = ["tell_merchant"]


def tell_merchant(conn: Connection, p: Platform, trade, event_type: str, now: datetime, *,
                  components: list | None = None, orders: list | None = None) -> None:
    """`components`, `orders`: the trade's parts as `load_components` would read them, and its
    orders as `load_orders` would, when the caller knows them (None: read them)."""
    if components is None:
        components = load_components(conn, trade["trade_no"])
    if orders is None:
        orders = load_orders(conn, p, trade["trade_no"])
    notifications.enqueue(conn, now=now, merchant_id=trade["merchant_id"], app_id=trade["app_id"],
                          type=event_type, subject_id=trade["trade_no"],
                          data=trade_view(p, trade, components, orders),
                          notify_url=trade["notify_url"], tz=p.settings.tz)
