"""Every channel kind the platform can speak, by name. The one place that names them: adding a
channel is adding its package and a line here. The core only ever sees `ChannelKind`s and the
`Channel`s they build (see `piaohao.channels.spi.plugin`)."""

from __future__ import annotations

from piaohao.channels.alipay.plugin import KIND as ALIPAY
from piaohao.channels.sandbox.plugin import KIND as SANDBOX
from piaohao.channels.spi.plugin import ChannelKind
from piaohao.channels.wechatpay.plugin import KIND as WECHATPAY

__all__ = ["KINDS", "kind_of_product"]

KINDS: dict[str, ChannelKind] = {k.name: k for k in (SANDBOX, ALIPAY, WECHATPAY)}
_PRODUCT_KIND = {product.name: kind for kind in KINDS.values() for product in kind.products}


def kind_of_product(product: str) -> ChannelKind | None:
    """The kind that offers `product` (`alipay.page` -> alipay), or None."""
    return _PRODUCT_KIND.get(product)
