"""Clearing and settlement (清結算, capabilities 6-7): billing by fee rules, allocation of each
order between its seller and split receivers, verified settlement batches, and the hooks the
trade, payment and refund services call inside their own transactions. docs/settlement.md.
"""

from piaohao.clearing.orders import on_trade_closed, on_trade_paid, order_views

__all__ = ["on_trade_closed", "on_trade_paid", "order_views"]
