"""Transfers (轉): a member's available balance to another member of the same merchant, atomically.

One transaction writes the transfer record, one ledger entry (debit the sender's balance, credit
the receiver's) and the `transfer.succeeded` event; a balance that is not enough makes the ledger
refuse the entry (the floor check runs under the balance row's lock), and the whole transaction,
record included, rolls back: `409 INSUFFICIENT_BALANCE` and nothing moved. Idempotent and
re-entrant on (merchant, out_request_no): a retry of a transfer that succeeded answers it again
(even if the balance is no longer enough), a retry of one that was refused tries again.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, select

from piaohao.books import transfer
from piaohao.db.inserts import Raced, insert_once
from piaohao.db.schema_members import transfers
from piaohao.domain.business import NEW, TRANSFER_STATES
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InsufficientBalance,
    InsufficientFunds,
    InvalidRequest,
    TransferNotFound,
)
from piaohao.kernel.ids import new_id
from piaohao.kernel.outbound import check_urls
from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.members import check_amount, fingerprint, load_member
from piaohao.services.passwords import verify_payment_password

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewTransfer:
    out_request_no: str
    from_member_id: str
    to_member_id: str
    amount: int
    payment_password: str
    notify_url: str | None = None

    def fingerprint(self) -> str:  # the password is not part of "the same request"
        return fingerprint(from_member_id=self.from_member_id, to_member_id=self.to_member_id, amount=self.amount,
                           notify_url=self.notify_url)


def transfer_view(p: Platform, t) -> dict:
    tz = p.settings.tz
    return {
        "transfer_no": t["transfer_no"], "out_request_no": t["out_request_no"],
        "from_member_id": t["from_member_id"], "to_member_id": t["to_member_id"], "amount": t["amount"],
        "currency": t["currency"], "status": t["status"], "notify_url": t["notify_url"],
        "created_at": rfc3339(t["created_at"], tz), "finished_at": rfc3339(t["finished_at"], tz),
    }


def _find(conn: Connection, merchant_id: str, out_request_no: str):
    return conn.execute(select(transfers).where(transfers.c.merchant_id == merchant_id,
                                                transfers.c.out_request_no == out_request_no)).mappings().first()


def create_transfer(p: Platform, merchant_id: str, app_id: str, req: NewTransfer) -> tuple[dict, bool]:
    """Returns (transfer view, created). Raises InvalidRequest (same member on both sides, other
    currencies), MemberNotFound, InvalidPaymentPassword / PaymentPasswordLocked (the sender's),
    InsufficientBalance, IdempotencyConflict."""
    check_urls(allow_private=p.settings.outbound_private_allowed, notify_url=req.notify_url)
    check_amount(req.amount)
    if req.from_member_id == req.to_member_id:
        raise InvalidRequest("from_member_id and to_member_id must be two different members")
    digest = req.fingerprint()

    def replay(existing) -> dict:
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(f"out_request_no {req.out_request_no} was already used for another transfer")
        return transfer_view(p, existing)

    with p.db.read() as conn:
        existing = _find(conn, merchant_id, req.out_request_no)
        if existing is not None:
            return replay(existing), False
        sender = load_member(conn, merchant_id, req.from_member_id)
        receiver = load_member(conn, merchant_id, req.to_member_id)
    if sender["currency"] != receiver["currency"]:
        raise InvalidRequest("the two members hold different currencies")
    verify_payment_password(p, req.from_member_id, req.payment_password, p.clock.now())
    now = p.clock.now()
    currency = sender["currency"]
    row = {"transfer_no": new_id("tf"), "merchant_id": merchant_id, "app_id": app_id,
           "out_request_no": req.out_request_no, "from_member_id": req.from_member_id,
           "to_member_id": req.to_member_id, "amount": req.amount, "currency": currency,
           "status": TRANSFER_STATES.next(NEW, "create"), "notify_url": req.notify_url, "request_hash": digest,
           "created_at": now, "finished_at": now}

    def tx(conn: Connection) -> dict:
        insert_once(conn, transfers, row, ["merchant_id", "out_request_no"])
        try:
            transfer.move(conn, transfer_no=row["transfer_no"], from_member_id=req.from_member_id,
                          to_member_id=req.to_member_id, currency=currency, amount=req.amount, at=now)
        except InsufficientFunds:
            raise InsufficientBalance("the sender's available balance is not enough") from None
        view = transfer_view(p, row)
        notifications.enqueue(conn, now=now, merchant_id=merchant_id, app_id=app_id, type="transfer.succeeded",
                              subject_id=row["transfer_no"], data=view, notify_url=req.notify_url, tz=p.settings.tz)
        return view

    try:
        view = p.db.write(tx)
    except Raced:
        with p.db.read() as conn:
            return replay(_find(conn, merchant_id, req.out_request_no)), False
    log.info("transfer.succeeded", transfer_no=view["transfer_no"], amount=req.amount)
    return view, True


def get_transfer(p: Platform, merchant_id: str, *, transfer_no: str | None = None,
                 out_request_no: str | None = None) -> dict:
    q = select(transfers).where(transfers.c.merchant_id == merchant_id)
    if transfer_no is not None:
        q = q.where(transfers.c.transfer_no == transfer_no)
    elif out_request_no is not None:
        q = q.where(transfers.c.out_request_no == out_request_no)
    else:
        raise InvalidRequest("give transfer_no or out_request_no")
    with p.db.read() as conn:
        row = conn.execute(q).mappings().first()
    if row is None:
        raise TransferNotFound("no such transfer")
    return transfer_view(p, row)
