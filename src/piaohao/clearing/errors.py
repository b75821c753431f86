"""The errors of clearing and settlement, with their API codes (see API.md)."""

from __future__ import annotations

from piaohao.errors import NotFound, PiaohaoError


class SubMerchantNotFound(NotFound):
    code = "SUB_MERCHANT_NOT_FOUND"


class ReceiverNotFound(NotFound):
    code = "RECEIVER_NOT_FOUND"


class OrderNotFound(NotFound):
    code = "ORDER_NOT_FOUND"


class SettlementBatchNotFound(NotFound):
    code = "SETTLEMENT_BATCH_NOT_FOUND"


class SubMerchantNotActive(PiaohaoError):
    status, code = 409, "SUB_MERCHANT_NOT_ACTIVE"


class SubMerchantStateConflict(PiaohaoError):
    status, code = 409, "SUB_MERCHANT_STATE_CONFLICT"


class ReceiverLimitExceeded(PiaohaoError):
    status, code = 409, "RECEIVER_LIMIT_EXCEEDED"


class InvalidOrders(PiaohaoError):
    status, code = 400, "INVALID_ORDERS"


class SplitRatioExceeded(PiaohaoError):
    status, code = 400, "SPLIT_RATIO_EXCEEDED"


class MarketingCapExceeded(PiaohaoError):
    status, code = 409, "MARKETING_CAP_EXCEEDED"


class TradeNotSettlable(PiaohaoError):
    status, code = 409, "TRADE_NOT_SETTLABLE"


class RefundInProgress(PiaohaoError):
    """An order with a refund still at the channel settles once that refund is final."""

    status, code = 409, "REFUND_IN_PROGRESS"


class NoFeeRule(PiaohaoError):
    """A record matched no fee rule: a configuration error, never a silent zero fee."""

    status, code = 500, "NO_FEE_RULE"


class SettlementVerificationFailed(PiaohaoError):
    """A batch did not verify (totals, exactly-once, ledger): nothing of it was written."""

    status, code = 500, "SETTLEMENT_VERIFICATION_FAILED"
