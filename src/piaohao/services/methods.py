"""Which channel methods (products) a trade may be paid with, and through which channel account.

A merchant's active channel accounts offer their kinds' products (`alipay.page`, `wechatpay.native`,
...), the platform's own provisioned accounts (the sandbox, where it is on) theirs. When two
accounts offer the same product, the newest active one carries new payments. A product whose
per-payment cap is below the amount, or that does not take the trade's currency, is not offered,
and paying with it is METHOD_NOT_AVAILABLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from piaohao.channels.spi import Product
from piaohao.kernel.errors import MethodNotAvailable
from piaohao.platform import Platform
from piaohao.services.channel_accounts import active_accounts

__all__ = ["ChannelMethod", "channel_methods", "resolve"]


@dataclass(frozen=True)
class ChannelMethod:
    method: str  # the product's name: what the buyer chooses
    channel_key: str  # the channel account that carries it
    product: Product


def channel_methods(p: Platform, merchant_id: str, currency: str, amount: int, *,
                    accounts: Sequence | None = None) -> list[ChannelMethod]:
    """`accounts`: the merchant's active accounts (`active_accounts`) when the caller has read them
    already: a request that asks several questions about its methods reads them once."""
    out: list[ChannelMethod] = []
    seen: set[str] = set()
    for row in active_accounts(p, merchant_id) if accounts is None else accounts:
        try:
            channel = p.channels[row.channel_account_id]
        except KeyError:
            continue  # a platform account this process did not provision (the sandbox is off)
        for product in channel.products:
            if product.name in seen or currency not in product.currencies:
                continue
            if product.amount_max_minor is not None and amount > product.amount_max_minor:
                continue
            seen.add(product.name)
            out.append(ChannelMethod(product.name, row.channel_account_id, product))
    return out


def resolve(p: Platform, merchant_id: str, currency: str, method: str, amount: int, *,
            accounts: Sequence | None = None) -> ChannelMethod:
    for m in channel_methods(p, merchant_id, currency, amount, accounts=accounts):
        if m.method == method:
            return m
    raise MethodNotAvailable(f"payment method {method!r} is not available for this trade")
