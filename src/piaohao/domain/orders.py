"""The states of an order of a trade (合併支付's sub-orders, or a trade's implicit own order)."""

from __future__ import annotations

CREATED, PENDING, SETTLED, CLOSED = "created", "pending_settlement", "settled", "closed"
OWN_ORDER_NO = ":own"  # the implicit order of a trade without orders (merchant keys cannot hold ":")
