"""The public shapes of our objects (API responses and notification `data`), in one place."""

from __future__ import annotations

from sqlalchemy import Connection, select

from piaohao.clearing import order_views
from piaohao.db.schema import trade_components
from piaohao.kernel.clock import rfc3339
from piaohao.platform import Platform


def load_components(conn: Connection, trade_no: str) -> list:
    """The funding parts that hold or have paid money (released ones are history)."""
    return conn.execute(select(trade_components).where(
        trade_components.c.trade_no == trade_no, trade_components.c.status != "released")
        .order_by(trade_components.c.created_at, trade_components.c.method)).mappings().all()


def load_orders(conn: Connection, p: Platform, trade_no: str) -> list:
    """The trade's orders (合併支付), with their splits and settlement status."""
    return order_views(conn, p, trade_no)


def trade_view(p: Platform, t, components: list | None = None, orders: list | None = None) -> dict:
    """`components` (how it was paid) are listed once the trade has any; `orders` when it has them."""
    tz = p.settings.tz
    return {
        "trade_no": t["trade_no"],
        "out_trade_no": t["out_trade_no"],
        "amount": t["amount"],
        "currency": t["currency"],
        "subject": t["subject"],
        "status": t["status"],
        "refunded_amount": t["refunded_amount"],
        "expires_at": rfc3339(t["expires_at"], tz),
        "paid_at": rfc3339(t["paid_at"], tz),
        "closed_at": rfc3339(t["closed_at"], tz),
        "close_reason": t["close_reason"],
        "created_at": rfc3339(t["created_at"], tz),
        "buyer_id": t["buyer_id"],
        "notify_url": t["notify_url"],
        "return_url": t["return_url"],
        "pay_url": p.pay_url(t["cashier_token"]),
        "member_id": t.get("member_id"),
        "components": [{"method": c["method"], "amount": c["amount"], "refunded_amount": c["refunded_amount"]}
                       for c in components or ()],
        "orders": list(orders or ()),
    }
