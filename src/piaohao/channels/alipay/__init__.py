"""The Alipay channel: page and WAP pay over Alipay's open gateway (`alipay.trade.*`, RSA2).

Imports nothing from piaohao but `piaohao.channels.spi`. See README.md for what it supports and
how a merchant connects a real Alipay app.
"""

from .bill import BillUnreadable
from .channel import AlipayChannel, BillUnavailable
from .config import PRODUCTION_GATEWAY_URL, SANDBOX_GATEWAY_URL, AlipayConfig
from .notifications import NOTIFY_AGE_MAX
from .transformers import AMOUNT_FEN_MAX

__all__ = ["AMOUNT_FEN_MAX", "NOTIFY_AGE_MAX", "PRODUCTION_GATEWAY_URL", "SANDBOX_GATEWAY_URL", "AlipayChannel",
           "AlipayConfig", "BillUnavailable", "BillUnreadable"]
