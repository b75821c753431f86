"""The one interface every payment channel implements.

The core speaks only these types; a channel adapter translates them to and from its provider's
wire format (field names, signatures, units) and never lets them leak out. Every call can time
out, fail, answer twice or answer late, so every result carries an explicit outcome, and
`UNKNOWN` is never to be read as failure: the caller settles it by querying later.

Identifiers: the core's `payment_no` is the channel's merchant order number; the channel's own
number comes back as `channel_txn_no`. Likewise `refund_no` / `channel_refund_no`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # final: money moved
    FAILED = "failed"  # final: money did not move and will not
    PENDING = "pending"  # accepted, not final yet (e.g. waiting for the buyer)
    CLOSED = "closed"  # final: the channel will not accept payment for it any more
    NOT_FOUND = "not_found"  # the channel has no such order
    UNKNOWN = "unknown"  # timeout, error, unreadable answer: outcome not known


class NextActionType(StrEnum):
    REDIRECT = "redirect"  # send the buyer's browser to `url` (GET)
    QR_CODE = "qr_code"  # show `code_url` as a QR code for the buyer's phone
    JSAPI = "jsapi"  # hand `params` to the in-app JS bridge (WeChat JSAPI)
    FORM = "form"  # POST `params` to `url` from the buyer's browser


@dataclass(frozen=True)
class NextAction:
    """What the buyer's side must do to pay, in the channel's own terms."""

    type: NextActionType
    url: str | None = None
    code_url: str | None = None
    params: Mapping[str, str] | None = None

    def as_dict(self) -> dict:
        out: dict = {"type": str(self.type)}
        if self.url is not None:
            out["url"] = self.url
        if self.code_url is not None:
            out["code_url"] = self.code_url
        if self.params is not None:
            out["params"] = dict(self.params)
        return out


@dataclass(frozen=True)
class Product:
    """One way to pay that a channel offers (`alipay.page`, `wechatpay.native`, `sandbox`...).

    `amount_max_minor` is the channel's own per-payment cap (None: no cap we know of)."""

    name: str
    currencies: frozenset[str] = frozenset({"CNY"})
    amount_max_minor: int | None = None
    needs_openid: bool = False
    title: str = ""  # what a buyer reads in the cashier; empty: the name
    banks: tuple[str, ...] = ()  # online banking: the buyer picks one of these banks (CreatePayment.bank)
    card: bool = False  # quick pay: paid with a card bound through `CardChannel`, no redirect
    mandate: bool = False  # agreement pay: debited under a signed mandate (`MandateChannel`), no buyer


@dataclass(frozen=True)
class CreatePayment:
    payment_no: str
    amount: int
    currency: str
    subject: str
    expires_at: datetime
    notify_url: str
    return_url: str | None = None
    product: str = ""  # one of the channel's `products`; empty: its default
    openid: str | None = None  # WeChat JSAPI: the payer's openid under our appid
    client_ip: str | None = None  # the buyer's IP, which some products require (WeChat H5)
    bank: str | None = None  # online banking: one of the product's `banks`
    card_token: str | None = None  # quick pay: the channel's token of a bound card
    mandate_no: str | None = None  # agreement pay: our number of the signed mandate


@dataclass(frozen=True)
class PaymentResult:
    outcome: Outcome
    redirect_url: str | None = None
    next_action: NextAction | None = None
    channel_txn_no: str | None = None
    amount: int | None = None
    currency: str | None = None
    paid_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    payment_no: str
    refund_no: str
    amount: int
    currency: str
    reason: str | None = None
    notify_url: str | None = None
    payment_amount: int | None = None  # the original payment's amount (WeChat Pay requires it)


@dataclass(frozen=True)
class RefundResult:
    outcome: Outcome
    channel_refund_no: str | None = None
    amount: int | None = None
    finished_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class PayoutRequest:
    payout_no: str
    amount: int
    currency: str
    bank: str
    account_number: str
    account_name: str


@dataclass(frozen=True)
class PayoutResult:
    outcome: Outcome
    channel_payout_no: str | None = None
    finished_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class BillRow:
    """One line of the channel's daily bill, in the core's vocabulary."""

    record_type: str  # "payment" | "refund"
    payment_no: str
    refund_no: str | None
    channel_txn_no: str
    amount: int
    currency: str
    finished_at: datetime
    fee: int = 0  # the channel's fee on this row, minor units (refund rows: fee returned, negative)
    channel_refund_no: str | None = None


@dataclass(frozen=True)
class ChannelNotification:
    """A verified notification from the channel. Only `verify_notification` makes these."""

    kind: str  # "payment" | "refund" | "payout"
    payment_no: str | None
    outcome: Outcome
    # This record's own amount; None when the notification does not state it (Alipay's refund
    # notifications carry only the payment's total refunded so far): the core then checks nothing
    # against it and learns the amount from the record and the channel's query.
    amount: int | None
    currency: str
    channel_txn_no: str | None
    refund_no: str | None = None
    payout_no: str | None = None
    finished_at: datetime | None = None
    raw: dict = field(default_factory=dict)


class NotificationRejected(Exception):
    """The notification is not from the channel (bad signature, unreadable). `claimed_payment_no`
    is what it said, unverified: good only as a hint to query the channel early."""

    def __init__(self, reason: str, claimed_payment_no: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.claimed_payment_no = claimed_payment_no


class BillUnavailable(RuntimeError):
    """The day's bill could not be fetched, verified (hash, signature) or read: try again later.
    The one channel call whose result has no `Outcome`."""


@dataclass(frozen=True)
class NotificationAck:
    """What to answer the channel so it stops retrying."""

    status_code: int
    body: bytes
    media_type: str = "application/json"


class Channel(Protocol):
    """A payment channel. Implementations must be thread-safe and must not raise on network
    trouble: they return `Outcome.UNKNOWN` with `error` instead."""

    name: str
    products: tuple[Product, ...]

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        """Start a payment; PENDING with `redirect_url` on success. Idempotent on `payment_no`."""

    def query_payment(self, payment_no: str) -> PaymentResult:
        """The channel's own record: the truth about a payment."""

    def close_payment(self, payment_no: str) -> PaymentResult:
        """Stop a payment being paid. CLOSED, or SUCCEEDED if the buyer already paid."""

    def refund(self, req: RefundRequest) -> RefundResult:
        """Ask for a refund; idempotent on `refund_no`."""

    def query_refund(self, refund_no: str, payment_no: str) -> RefundResult:
        """The channel's record of a refund (some channels key refunds by their payment too)."""

    def download_bill(self, bill_date: date) -> Iterable[BillRow]:
        """The channel's daily bill for one business day, row by row (bills can be large)."""

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        """Check the signature on the raw bytes before parsing anything; raise NotificationRejected."""

    def ack(self, accepted: bool) -> NotificationAck:
        """The answer the channel expects for a notification we processed (or refused)."""


@dataclass(frozen=True)
class BindCard:
    """A buyer's card to bind for quick pay. The numbers cross this interface once, to the channel,
    and are never logged; the core keeps them only sealed."""

    card_no: str
    holder_name: str
    id_number: str
    phone: str

    def __repr__(self) -> str:  # never the numbers, even in a traceback
        return f"BindCard(last4={self.card_no[-4:]!r})"


@dataclass(frozen=True)
class CardResult:
    """The channel's record of a bound card. SUCCEEDED: active; PENDING: waiting for the SMS code;
    FAILED: refused (`error` says why; on `confirm_card`, a wrong code); CLOSED: unbound."""

    outcome: Outcome
    card_token: str | None = None
    bank: str | None = None
    last4: str | None = None
    error: str | None = None


class CardChannel(Channel, Protocol):
    """A channel that binds buyers' cards (quick pay): bind, confirm with the SMS code the bank
    sent, unbind. A payment with `CreatePayment.card_token` then needs no redirect: the answer is
    SUCCEEDED, FAILED (declined) or PENDING (the bank settles it later by notification or query)."""

    def bind_card(self, req: BindCard) -> CardResult: ...

    def confirm_card(self, card_token: str, sms_code: str) -> CardResult: ...

    def unbind_card(self, card_token: str) -> CardResult: ...


@dataclass(frozen=True)
class CreateMandate:
    mandate_no: str  # ours; the channel's merchant agreement number
    max_amount_per_debit: int
    currency: str


@dataclass(frozen=True)
class MandateResult:
    """The channel's record of a mandate. PENDING: waiting for the buyer to sign at `sign_url`;
    SUCCEEDED: signed (active); FAILED: the buyer refused; CLOSED: terminated (by either side);
    NOT_FOUND; UNKNOWN. Channels often never notify expiry or a buyer's termination: query."""

    outcome: Outcome
    sign_url: str | None = None
    channel_mandate_no: str | None = None
    error: str | None = None


class MandateChannel(Channel, Protocol):
    """A channel with mandates (agreement pay, 代扣). A payment with `CreatePayment.mandate_no`
    is a debit with no buyer present: SUCCEEDED, FAILED (refused: over the limit, not signed) or
    PENDING (settled later by notification or query)."""

    def create_mandate(self, req: CreateMandate) -> MandateResult: ...

    def query_mandate(self, mandate_no: str) -> MandateResult: ...

    def terminate_mandate(self, mandate_no: str) -> MandateResult: ...


class PayoutChannel(Channel, Protocol):
    """A channel that can also pay money out to bank accounts."""

    def payout(self, req: PayoutRequest) -> PayoutResult:
        """Pay money out to a bank account; idempotent on `payout_no`."""

    def query_payout(self, payout_no: str) -> PayoutResult: ...
