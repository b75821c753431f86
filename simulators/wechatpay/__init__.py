"""A protocol-faithful fake of WeChat Pay API v3 ("another company": imports nothing from piaohao).

Strict request signatures, signed answers, encrypted and retried notifications, refunds, the
trade bill, and faults on demand. Start with `WechatPayFake`.
"""

from .crypto import PlatformIdentity
from .fake import WechatPayFake
from .faults import FAULT_KINDS, Fault, FaultBook
from .models import Merchant, Notification, Refund, Trade
from .notifier import Notifier

__all__ = [
    "FAULT_KINDS", "Fault", "FaultBook", "Merchant", "Notification", "Notifier", "PlatformIdentity", "Refund",
    "Trade", "WechatPayFake",
]
