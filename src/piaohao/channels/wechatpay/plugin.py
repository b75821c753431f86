"""WeChat Pay v3 as a channel kind: a merchant's WeChat Pay merchant number, configured as a
channel account."""

from __future__ import annotations

from collections.abc import Mapping

from piaohao.channels.spi.crypto import KeyFormatError
from piaohao.channels.spi.plugin import ChannelContext, ChannelKind, ConfigError

from .channel import WechatPayChannel
from .config import PRODUCTION_BASE_URL, WechatPayConfig

__all__ = ["KIND"]


def _build(config: Mapping[str, str], ctx: ChannelContext) -> WechatPayChannel:
    try:
        cfg = WechatPayConfig(
            mchid=config["mchid"], appid=config["appid"], serial_no=config["serial_no"],
            private_key_pem=config["private_key_pem"], apiv3_key=config["apiv3_key"],
            platform_public_key_pem=config["platform_public_key_pem"], platform_serial=config["platform_serial"],
            base_url=config.get("base_url") or PRODUCTION_BASE_URL)
        return WechatPayChannel(cfg, http=ctx.http_client(), now=ctx.now, timeout_s=ctx.timeout_s)
    except KeyError as e:
        raise ConfigError(f"WeChat Pay account: {e.args[0]} is missing") from None
    except (KeyFormatError, ValueError) as e:
        raise ConfigError(f"WeChat Pay account: {e}") from None


KIND = ChannelKind(name="wechatpay", products=WechatPayChannel.products,
                   secret_fields=frozenset({"private_key_pem", "apiv3_key"}), build=_build,
                   describe=lambda config: config.get("mchid", ""))
