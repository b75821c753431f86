"""WeChat Pay API v3 (Native, H5 and JSAPI payments, refunds, the trade bill, notifications).

Imports only `piaohao.channels.spi` from piaohao. See README.md for what it supports and how a
merchant connects a real account.
"""

from piaohao.channels.wechatpay.bill import BillUnavailable
from piaohao.channels.wechatpay.channel import AMOUNT_MAX_FEN, WechatPayChannel
from piaohao.channels.wechatpay.config import PRODUCTION_BASE_URL, WechatPayConfig

__all__ = ["AMOUNT_MAX_FEN", "BillUnavailable", "PRODUCTION_BASE_URL", "WechatPayChannel", "WechatPayConfig"]
