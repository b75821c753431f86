"""An in-memory channel for service-level tests and local experiments: everything the `Channel`
protocol promises, with no HTTP, no keys and no clock of its own.

The test plays the buyer and the channel's back office: `pay(payment_no)` makes a payment paid,
`fail(...)` failed; refunds succeed unless `refuse_refunds` is set; payouts succeed, except to
bank accounts ending in 0002 (refused), 0003 (paid, first answer lost) and 0009 (never answered),
as the sandbox bank does. `notification(...)` makes the body of a notification that
`verify_notification` accepts (JSON with a shared-secret HMAC), and `forged(...)` one it refuses.
Thread-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from piaohao.channels.spi.types import (
    BillRow,
    ChannelNotification,
    CreatePayment,
    NextAction,
    NextActionType,
    NotificationAck,
    NotificationRejected,
    Outcome,
    PaymentResult,
    PayoutRequest,
    PayoutResult,
    Product,
    RefundRequest,
    RefundResult,
)

__all__ = ["FakeChannel", "PAYOUT_SUFFIX"]

PAYOUT_SUFFIX = {"paid": "0001", "refused": "0002", "timeout": "0003", "silent": "0009"}
_SECRET = b"fake-channel-notification-secret"


@dataclass
class _Payment:
    req: CreatePayment
    status: Outcome = Outcome.PENDING
    paid_at: datetime | None = None
    refunded: int = 0


@dataclass
class FakeChannel:
    name: str = "fake"
    products: tuple[Product, ...] = (Product("fake", title="Fake channel (tests)"),)
    refuse_refunds: bool = False
    payments: dict[str, _Payment] = field(default_factory=dict)
    refunds: dict[str, tuple[RefundRequest, Outcome]] = field(default_factory=dict)
    payouts: dict[str, PayoutRequest] = field(default_factory=dict)
    payout_calls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- the buyer and the back office ----------------------------------------------------------
    def pay(self, payment_no: str, at: datetime | None = None) -> None:
        with self._lock:
            p = self.payments[payment_no]
            if p.status == Outcome.PENDING:
                p.status, p.paid_at = Outcome.SUCCEEDED, at or datetime.now(UTC)

    def fail(self, payment_no: str) -> None:
        with self._lock:
            p = self.payments[payment_no]
            if p.status == Outcome.PENDING:
                p.status = Outcome.FAILED

    def notification(self, payment_no: str, *, amount: int | None = None) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the channel's notification that `payment_no` is in its current state."""
        with self._lock:
            p = self.payments[payment_no]
            body = json.dumps({"payment_no": payment_no, "status": str(p.status),
                               "amount": p.req.amount if amount is None else amount,
                               "currency": p.req.currency}).encode()
        return {"x-fake-signature": hmac.new(_SECRET, body, hashlib.sha256).hexdigest()}, body

    def forged(self, payment_no: str) -> tuple[dict[str, str], bytes]:
        headers, body = self.notification(payment_no)
        return {"x-fake-signature": "0" * 64}, body

    # --- the Channel protocol -------------------------------------------------------------------
    def _result(self, payment_no: str) -> PaymentResult:
        p = self.payments.get(payment_no)
        if p is None:
            return PaymentResult(Outcome.NOT_FOUND)
        return PaymentResult(p.status, channel_txn_no="F" + payment_no, amount=p.req.amount,
                             currency=p.req.currency, paid_at=p.paid_at)

    def create_payment(self, req: CreatePayment) -> PaymentResult:
        with self._lock:
            self.payments.setdefault(req.payment_no, _Payment(req))
        url = f"http://fake.invalid/pay/{req.payment_no}"
        return PaymentResult(Outcome.PENDING, redirect_url=url, channel_txn_no="F" + req.payment_no,
                             next_action=NextAction(NextActionType.REDIRECT, url=url))

    def query_payment(self, payment_no: str) -> PaymentResult:
        with self._lock:
            return self._result(payment_no)

    def close_payment(self, payment_no: str) -> PaymentResult:
        with self._lock:
            p = self.payments.get(payment_no)
            if p is not None and p.status == Outcome.PENDING:
                p.status = Outcome.CLOSED
            return self._result(payment_no)

    def refund(self, req: RefundRequest) -> RefundResult:
        with self._lock:
            p = self.payments.get(req.payment_no)
            if req.refund_no in self.refunds:
                return self._refund(req.refund_no)
            ok = (not self.refuse_refunds and p is not None and p.status == Outcome.SUCCEEDED
                  and p.refunded + req.amount <= p.req.amount)
            if ok:
                p.refunded += req.amount
            self.refunds[req.refund_no] = (req, Outcome.SUCCEEDED if ok else Outcome.FAILED)
            return self._refund(req.refund_no)

    def _refund(self, refund_no: str) -> RefundResult:
        found = self.refunds.get(refund_no)
        if found is None:
            return RefundResult(Outcome.NOT_FOUND)
        req, outcome = found
        return RefundResult(outcome, channel_refund_no="FR" + refund_no, amount=req.amount,
                            error=None if outcome == Outcome.SUCCEEDED else "REFUSED")

    def query_refund(self, refund_no: str, payment_no: str = "") -> RefundResult:
        with self._lock:
            return self._refund(refund_no)

    def payout(self, req: PayoutRequest) -> PayoutResult:
        with self._lock:
            self.payout_calls[req.payout_no] = self.payout_calls.get(req.payout_no, 0) + 1
            first = self.payouts.setdefault(req.payout_no, req)
            if (first.amount, first.account_number) != (req.amount, req.account_number):
                return PayoutResult(Outcome.FAILED, error="the same payout_no for another payout")
            if req.account_number.endswith(PAYOUT_SUFFIX["timeout"]) and self.payout_calls[req.payout_no] == 1:
                return PayoutResult(Outcome.UNKNOWN, error="timeout")
        return self.query_payout(req.payout_no)

    def query_payout(self, payout_no: str) -> PayoutResult:
        with self._lock:
            req = self.payouts.get(payout_no)
        if req is None:
            return PayoutResult(Outcome.NOT_FOUND)
        if req.account_number.endswith(PAYOUT_SUFFIX["silent"]):
            return PayoutResult(Outcome.UNKNOWN, error="timeout")
        if req.account_number.endswith(PAYOUT_SUFFIX["refused"]):
            return PayoutResult(Outcome.FAILED, error="ACCOUNT_INVALID")
        return PayoutResult(Outcome.SUCCEEDED, channel_payout_no="P" + payout_no)

    def download_bill(self, bill_date: date) -> Iterator[BillRow]:
        with self._lock:
            rows = [(no, p) for no, p in self.payments.items()
                    if p.status == Outcome.SUCCEEDED and p.paid_at and p.paid_at.date() == bill_date]
        for no, p in sorted(rows):
            yield BillRow("payment", no, None, "F" + no, p.req.amount, p.req.currency, p.paid_at)

    def verify_notification(self, headers: dict[str, str], body: bytes) -> ChannelNotification:
        want = hmac.new(_SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, headers.get("x-fake-signature", "")):
            raise NotificationRejected("bad signature")
        data = json.loads(body)
        return ChannelNotification(kind="payment", payment_no=data["payment_no"], outcome=Outcome(data["status"]),
                                   amount=int(data["amount"]), currency=data["currency"],
                                   channel_txn_no="F" + data["payment_no"], raw=data)

    def ack(self, accepted: bool) -> NotificationAck:
        return NotificationAck(200 if accepted else 400, b"OK" if accepted else b"FAIL", "text/plain")
