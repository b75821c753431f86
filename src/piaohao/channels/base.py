"""The one interface every payment channel implements.

The core speaks only these types; a channel adapter translates them to and from its provider's
wire format (field names, signatures, units) and never lets them leak out. Every call can time
out, fail, answer twice or answer late, so every result carries an explicit outcome, and
`UNKNOWN` is never to be read as failure: the caller settles it by querying later.

Identifiers: the core's `payment_no` is the channel's merchant order number; the channel's own
number comes back as `channel_txn_no`. Likewise `refund_no` / `channel_refund_no`.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class CreatePayment:
    payment_no: str
    amount: int
    currency: str
    subject: str
    expires_at: datetime
    notify_url: str
    return_url: str | None = None


@dataclass(frozen=True)
class PaymentResult:
    outcome: Outcome
    redirect_url: str | None = None
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


@dataclass(frozen=True)
class ChannelNotification:
    """A verified notification from the channel. Only `verify_notification` makes these."""

    kind: str  # "payment" | "refund" | "payout"
    payment_no: str | None
    outcome: Outcome
    amount: int
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

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        """Start a payment; PENDING with `redirect_url` on success. Idempotent on `payment_no`."""

    def query_payment(self, payment_no: str) -> PaymentResult:
        """The channel's own record: the truth about a payment."""

    def close_payment(self, payment_no: str) -> PaymentResult:
        """Stop a payment being paid. CLOSED, or SUCCEEDED if the buyer already paid."""

    def refund(self, req: RefundRequest) -> RefundResult:
        """Ask for a refund; idempotent on `refund_no`."""

    def query_refund(self, refund_no: str) -> RefundResult: ...

    def payout(self, req: PayoutRequest) -> PayoutResult:
        """Pay money out to a bank account; idempotent on `payout_no`."""

    def query_payout(self, payout_no: str) -> PayoutResult: ...

    def download_bill(self, bill_date: date) -> list[BillRow]:
        """The channel's daily bill for one business day."""

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        """Check the signature on the raw bytes before parsing anything; raise NotificationRejected."""

    def ack(self, accepted: bool) -> NotificationAck:
        """The answer the channel expects for a notification we processed (or refused)."""
