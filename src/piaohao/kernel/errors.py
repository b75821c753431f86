"""Every error a caller of piaohao can see, in one tree. Read this before raising anything.

    PiaohaoError                       code: the stable UPPER_SNAKE code of API.md
    ├── InvalidInput                   the request is wrong; retrying it unchanged cannot help
    │   └── LedgerError                a ledger call was malformed (a bug in the caller, never input)
    ├── Unauthenticated                the caller is not who it says (signature, app, time, nonce)
    ├── Forbidden / Locked             the caller may not do this (now)
    ├── NotFound                       nothing by that number for this caller
    ├── Conflict                       the state of things refuses it (idempotency, balances, states)
    ├── TooLarge / RateLimited         limits
    ├── Unavailable                    an outside party did not answer; the outcome may be unknown
    └── InternalFault                  configuration or verification failure: nothing was written

Errors carry no HTTP status: `piaohao.api.errors` maps each category (or class) to one, in one
place; the CLI maps them to exit codes. No two classes share a name, and a code means one thing.
When a ledger posting function raises, it has written nothing in the caller's transaction.
"""

from __future__ import annotations


class PiaohaoError(Exception):
    """Base of every error a caller can see. `code` is the stable UPPER_SNAKE code."""

    code = "INVALID_REQUEST"

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ").lower()
        self.details = details


# --- categories -------------------------------------------------------------------------------
class InvalidInput(PiaohaoError):
    code = "INVALID_REQUEST"


class Unauthenticated(PiaohaoError):
    code = "UNAUTHENTICATED"


class Forbidden(PiaohaoError):
    code = "FORBIDDEN"


class Locked(PiaohaoError):
    code = "LOCKED"


class NotFound(PiaohaoError):
    code = "NOT_FOUND"


class Conflict(PiaohaoError):
    code = "CONFLICT"


class TooLarge(PiaohaoError):
    code = "PAYLOAD_TOO_LARGE"


class RateLimited(PiaohaoError):
    code = "RATE_LIMITED"

    def __init__(self, retry_after_s: int = 1):
        super().__init__("too many requests for this merchant", retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


class Unavailable(PiaohaoError):
    code = "UNAVAILABLE"


class InternalFault(PiaohaoError):
    code = "INTERNAL_ERROR"


class InvariantViolated(InternalFault):
    """A check that guards money failed (`kernel.invariants.require`): stop, write nothing."""

    code = "INVARIANT_VIOLATED"


# --- requests and authentication --------------------------------------------------------------
class InvalidRequest(InvalidInput):
    code = "INVALID_REQUEST"


class ZeroAmount(InvalidInput):
    code = "ZERO_AMOUNT"


class TradeExpired(InvalidInput):
    code = "TRADE_EXPIRED"


class InvalidUrl(InvalidInput):
    """A URL the platform would call later is not allowed (scheme, form, or a non-public address)."""

    code = "INVALID_URL"


class MethodNotAvailable(InvalidInput):
    code = "METHOD_NOT_AVAILABLE"


class InvalidSignature(Unauthenticated):
    code = "INVALID_SIGNATURE"


class UnknownApp(Unauthenticated):
    code = "UNKNOWN_APP"


class TimestampExpired(Unauthenticated):
    code = "TIMESTAMP_EXPIRED"


class NonceReused(Unauthenticated):
    code = "NONCE_REUSED"


class PayloadTooLarge(TooLarge):
    code = "PAYLOAD_TOO_LARGE"


class ChannelUnavailable(Unavailable):
    """The channel did not answer in time or answered with an error; the outcome may be unknown."""

    code = "CHANNEL_UNAVAILABLE"


# --- things not found -------------------------------------------------------------------------
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


class MemberNotFound(NotFound):
    code = "MEMBER_NOT_FOUND"


class TopupNotFound(NotFound):
    code = "TOPUP_NOT_FOUND"


class TransferNotFound(NotFound):
    code = "TRANSFER_NOT_FOUND"


class WithdrawalNotFound(NotFound):
    code = "WITHDRAWAL_NOT_FOUND"


class PayoutNotFound(NotFound):
    code = "PAYOUT_NOT_FOUND"


class SubMerchantNotFound(NotFound):
    code = "SUB_MERCHANT_NOT_FOUND"


class ReceiverNotFound(NotFound):
    code = "RECEIVER_NOT_FOUND"


class OrderNotFound(NotFound):
    code = "ORDER_NOT_FOUND"


class SettlementBatchNotFound(NotFound):
    code = "SETTLEMENT_BATCH_NOT_FOUND"


class AlertNotFound(NotFound):
    code = "ALERT_NOT_FOUND"


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"


class ChannelAccountNotFound(NotFound):
    code = "CHANNEL_ACCOUNT_NOT_FOUND"


# --- conflicts: idempotency and states --------------------------------------------------------
class IdempotencyConflict(Conflict):
    """A merchant's idempotency key was used before with other parameters (API.md: 422)."""

    code = "IDEMPOTENCY_CONFLICT"


class OperationNotAllowed(Conflict):
    """An operator action that the object's state refuses (resolving a final payment, retrying a
    refund that is not parked, ...)."""

    code = "OPERATION_NOT_ALLOWED"


class TradeNotClosable(Conflict):
    code = "TRADE_NOT_CLOSABLE"


class TradeNotPayable(Conflict):
    code = "TRADE_NOT_PAYABLE"


class TradeNotRefundable(Conflict):
    code = "TRADE_NOT_REFUNDABLE"


class RefundAmountExceeded(Conflict):
    code = "REFUND_AMOUNT_EXCEEDED"


class TradeNotSettlable(Conflict):
    code = "TRADE_NOT_SETTLABLE"


class RefundInProgress(Conflict):
    """An order with a refund still at the channel settles once that refund is final."""

    code = "REFUND_IN_PROGRESS"


class SubMerchantNotActive(Conflict):
    code = "SUB_MERCHANT_NOT_ACTIVE"


class SubMerchantStateConflict(Conflict):
    code = "SUB_MERCHANT_STATE_CONFLICT"


class ReceiverLimitExceeded(Conflict):
    code = "RECEIVER_LIMIT_EXCEEDED"


class MarketingCapExceeded(Conflict):
    code = "MARKETING_CAP_EXCEEDED"


# --- paying with the platform's own methods ---------------------------------------------------
class InvalidComponents(InvalidInput):
    code = "INVALID_COMPONENTS"


class InvalidOrders(InvalidInput):
    code = "INVALID_ORDERS"


class SplitRatioExceeded(InvalidInput):
    code = "SPLIT_RATIO_EXCEEDED"


class CoinsCapExceeded(Conflict):
    code = "COINS_CAP_EXCEEDED"


class InsufficientBalance(Conflict):
    code = "INSUFFICIENT_BALANCE"


class InvalidPaymentPassword(Forbidden):
    code = "INVALID_PAYMENT_PASSWORD"


class PaymentPasswordLocked(Locked):
    code = "PAYMENT_PASSWORD_LOCKED"


# --- configuration and verification -----------------------------------------------------------
class NoFeeRule(InternalFault):
    """A record matched no fee rule: a configuration error, never a silent zero fee."""

    code = "NO_FEE_RULE"


class SettlementVerificationFailed(InternalFault):
    """A batch did not verify (totals, exactly-once, ledger): nothing of it was written."""

    code = "SETTLEMENT_VERIFICATION_FAILED"


# --- the ledger engine ------------------------------------------------------------------------
class LedgerError(InvalidInput):
    code = "LEDGER_ERROR"


class InvalidLeg(LedgerError):
    """A leg's amount is not an int, is a bool, is zero, or exceeds 10^15 in magnitude; or bad shape."""

    code = "INVALID_LEG"


class UnbalancedEntry(LedgerError):
    """The legs of an entry do not sum to zero in some currency, or there are fewer than two."""

    code = "UNBALANCED_ENTRY"


class AccountNotFound(NotFound):
    code = "ACCOUNT_NOT_FOUND"


class AccountConflict(Conflict):
    """`get_or_create_account` found the account with a different normal side / constraint / shards."""

    code = "ACCOUNT_CONFLICT"


class EntryKeyConflict(Conflict):
    """A ledger entry key was already used for an entry with different legs (or kind): a bug in
    the flow that posted it, since each flow derives its keys from its own record."""

    code = "ENTRY_KEY_CONFLICT"


class InsufficientFunds(Conflict):
    """A constrained account would go below its floor (0, or -credit_limit), counting pending holds."""

    code = "INSUFFICIENT_FUNDS"

    def __init__(self, account_id: str, available: int, change: int, floor: int):
        super().__init__(
            f"account {account_id}: available {available} {change:+d} would go below {floor}",
            account_id=account_id, available=available, change=change, floor=floor)
        self.account_id = account_id
        self.available = available
        self.change = change
        self.floor = floor


class CreditLimitBelowUsed(Conflict):
    code = "CREDIT_LIMIT_BELOW_USED"


class HoldNotFound(NotFound):
    code = "HOLD_NOT_FOUND"


class HoldNotPending(Conflict):
    """Posting a voided/expired hold, voiding a posted one, or posting one past its expiry."""

    code = "HOLD_NOT_PENDING"

    def __init__(self, hold_id: str, status: str, message: str | None = None):
        super().__init__(message or f"hold {hold_id} is {status}", hold_id=hold_id, status=status)
        self.hold_id = hold_id
        self.hold_status = status


# --- more ways to pay (quick pay, pull mode) ----------------------------------------------------
class CardNotFound(NotFound):
    code = "CARD_NOT_FOUND"


class InvalidSmsCode(InvalidInput):
    """The verification code for binding a card is wrong (the third wrong one fails the card)."""

    code = "INVALID_SMS_CODE"


class CardNotActive(Conflict):
    code = "CARD_NOT_ACTIVE"


class PaymentDeclined(Conflict):
    """The bank refused a bound-card payment; nothing was taken or held."""

    code = "PAYMENT_DECLINED"


class PayinfoUnavailable(Unavailable):
    """The merchant's order system did not answer the PayInfo call in time, or answered 5xx."""

    code = "PAYINFO_UNAVAILABLE"


class PayinfoInvalid(Unavailable):
    """The order system's PayInfo answer is unsigned, wrongly signed or breaks a trade rule."""

    code = "PAYINFO_INVALID"


class AgreementNotFound(NotFound):
    code = "AGREEMENT_NOT_FOUND"


class AgreementNotActive(Conflict):
    code = "AGREEMENT_NOT_ACTIVE"


class AgreementLimitExceeded(Conflict):
    code = "AGREEMENT_LIMIT_EXCEEDED"


# --- the operator console (services/operators.py) ---------------------------------------------
class SignInRefused(Unauthenticated):
    """Wrong operator name or password (which of the two is never said)."""

    code = "SIGN_IN_REFUSED"


class OperatorLocked(Locked):
    """Too many wrong passwords in a row: sign-in is refused until the lock runs out."""

    code = "OPERATOR_LOCKED"


class OperatorExists(Conflict):
    code = "OPERATOR_EXISTS"


class NotPermitted(Forbidden):
    """The operator's role may look but not act, or the form's CSRF token is missing or wrong."""

    code = "NOT_PERMITTED"
