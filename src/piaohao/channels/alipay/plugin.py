"""Alipay as a channel kind: a merchant's Alipay app, configured as a channel account."""

from __future__ import annotations

from collections.abc import Mapping

from piaohao.channels.spi.crypto import KeyFormatError
from piaohao.channels.spi.plugin import ChannelContext, ChannelKind, ConfigError

from .channel import AlipayChannel
from .config import PRODUCTION_GATEWAY_URL, AlipayConfig

__all__ = ["KIND"]


def _build(config: Mapping[str, str], ctx: ChannelContext) -> AlipayChannel:
    try:
        cfg = AlipayConfig(app_id=config["app_id"], private_key_pem=config["private_key_pem"],
                           alipay_public_key_pem=config["alipay_public_key_pem"],
                           gateway_url=config.get("gateway_url") or PRODUCTION_GATEWAY_URL)
        return AlipayChannel(cfg, http=ctx.http_client(), now=ctx.now, timeout_s=ctx.timeout_s)
    except KeyError as e:
        raise ConfigError(f"Alipay account: {e.args[0]} is missing") from None
    except (KeyFormatError, ValueError) as e:
        raise ConfigError(f"Alipay account: {e}") from None


KIND = ChannelKind(name="alipay", products=AlipayChannel.products, secret_fields=frozenset({"private_key_pem"}),
                   build=_build, describe=lambda config: config.get("app_id", ""))
