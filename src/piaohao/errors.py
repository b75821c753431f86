"""One exception type per API error code; `api/errors.py` maps them to HTTP in one place."""

from __future__ import annotations


class PiaohaoError(Exception):
    """Base of every error a caller can see. `code` is the stable UPPER_SNAKE code."""

    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ").lower()
        self.details = details


class InvalidRequest(PiaohaoError):
    status, code = 400, "INVALID_REQUEST"


class ZeroAmount(PiaohaoError):
    status, code = 400, "ZERO_AMOUNT"


class TradeExpired(PiaohaoError):
    status, code = 400, "TRADE_EXPIRED"


class InvalidSignature(PiaohaoError):
    status, code = 401, "INVALID_SIGNATURE"


class UnknownApp(PiaohaoError):
    status, code = 401, "UNKNOWN_APP"


class TimestampExpired(PiaohaoError):
    status, code = 401, "TIMESTAMP_EXPIRED"


class NonceReused(PiaohaoError):
    status, code = 401, "NONCE_REUSED"


class NotFound(PiaohaoError):
    status, code = 404, "NOT_FOUND"


class TradeNotFound(NotFound):
    code = "TRADE_NOT_FOUND"


class RefundNotFound(NotFound):
    code = "REFUND_NOT_FOUND"


class EventNotFound(NotFound):
    code = "EVENT_NOT_FOUND"


class MerchantNotFound(NotFound):
    code = "MERCHANT_NOT_FOUND"


class AppNotFound(NotFound):
    code = "APP_NOT_FOUND"


class IdempotencyConflict(PiaohaoError):
    status, code = 422, "IDEMPOTENCY_CONFLICT"


class TradeNotClosable(PiaohaoError):
    status, code = 409, "TRADE_NOT_CLOSABLE"


class TradeNotPayable(PiaohaoError):
    status, code = 409, "TRADE_NOT_PAYABLE"


class MethodNotAvailable(PiaohaoError):
    status, code = 400, "METHOD_NOT_AVAILABLE"


class ChannelUnavailable(PiaohaoError):
    """The channel did not answer in time or answered with an error; the outcome may be unknown."""

    status, code = 503, "CHANNEL_UNAVAILABLE"


class RateLimited(PiaohaoError):
    status, code = 429, "RATE_LIMITED"

    def __init__(self, retry_after_s: int = 1):
        super().__init__("too many requests for this merchant", retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(PiaohaoError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


# --- member payments (shared by the cashier, members and business types) -----------------------
class MemberNotFound(NotFound):
    code = "MEMBER_NOT_FOUND"


class InvalidComponents(PiaohaoError):
    status, code = 400, "INVALID_COMPONENTS"


class CoinsCapExceeded(PiaohaoError):
    status, code = 409, "COINS_CAP_EXCEEDED"


class InsufficientBalance(PiaohaoError):
    status, code = 409, "INSUFFICIENT_BALANCE"


class InvalidPaymentPassword(PiaohaoError):
    status, code = 403, "INVALID_PAYMENT_PASSWORD"


class PaymentPasswordLocked(PiaohaoError):
    status, code = 423, "PAYMENT_PASSWORD_LOCKED"


# --- members and business types: top-ups, transfers, withdrawals, payouts ---------------------
class TopupNotFound(NotFound):
    code = "TOPUP_NOT_FOUND"


class TransferNotFound(NotFound):
    code = "TRANSFER_NOT_FOUND"


class WithdrawalNotFound(NotFound):
    code = "WITHDRAWAL_NOT_FOUND"


class PayoutNotFound(NotFound):
    code = "PAYOUT_NOT_FOUND"


# --- refunds ------------------------------------------------------------------------------------
class TradeNotRefundable(PiaohaoError):
    status, code = 409, "TRADE_NOT_REFUNDABLE"


class RefundAmountExceeded(PiaohaoError):
    status, code = 409, "REFUND_AMOUNT_EXCEEDED"
