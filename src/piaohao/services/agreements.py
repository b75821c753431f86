"""Agreement pay (協議支付 / 代扣): mandates signed by the buyer on the channel's page, then debits
that create and collect a trade with no buyer present.

- `create_agreement`: idempotent on (merchant, out_agreement_no); the row is written first, then
  the channel makes the mandate and its sign page (a lost answer is retried by the replay).
- `sync_due_agreements` (a worker loop): channels do not say when a buyer signs, refuses or ends a
  mandate at the channel, or when it expires (research part D), so we ask them periodically and
  move our state table; each change writes its event (`agreement.signed`, `.rejected`,
  `.terminated`, `.expired`) in the same transaction.
- `terminate_agreement`: ours ends at once (no more debits); the channel is told, and told again by
  the sync until it confirms.
- `debit`: the limit and the state are checked before the channel is called; the trade is created
  by the same use case as `POST /v1/trades` (idempotent on out_trade_no) and paid through
  `payments.start_payment`, so its money is collected by `books.collect` like any channel payment.
  A debit the channel refuses (e.g. the buyer ended the mandate meanwhile) closes the trade.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import timedelta

import orjson
import structlog
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from piaohao.channels.spi import CreateMandate, Outcome
from piaohao.db.schema_payways import agreement_debits, agreements
from piaohao.domain import agreements as states
from piaohao.domain.agreements import AGREEMENT_STATES, SIGN_WINDOW_S
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    AgreementLimitExceeded,
    AgreementNotActive,
    AgreementNotFound,
    ChannelUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    MethodNotAvailable,
    PaymentDeclined,
)
from piaohao.kernel.ids import new_id
from piaohao.kernel.money import is_valid_amount
from piaohao.platform import Platform
from piaohao.services import methods, notifications, trade_store
from piaohao.services.closing import close_pending_trade
from piaohao.services.members import load_member
from piaohao.services.payments import start_payment
from piaohao.services.trades import NewTrade, create_trade

__all__ = ["NewAgreement", "NewDebit", "create_agreement", "get_agreement", "terminate_agreement", "debit",
           "sync_due_agreements"]

log = structlog.get_logger(__name__)

DEBIT_TIMEOUT_S = 900  # a debit's trade: time for a processing debit to settle
SYNC_BATCH_MAX = 50


@dataclass(frozen=True)
class NewAgreement:
    out_agreement_no: str
    max_amount_per_debit: int
    member_id: str | None = None
    buyer_id: str | None = None
    notify_url: str | None = None
    currency: str = "CNY"

    def fingerprint(self) -> str:
        return hashlib.sha256(orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class NewDebit:
    out_trade_no: str
    amount: int
    subject: str
    notify_url: str | None = None


def view(p: Platform, row) -> dict:
    return {
        "agreement_no": row["agreement_no"], "out_agreement_no": row["out_agreement_no"],
        "member_id": row["member_id"], "buyer_id": row["buyer_id"],
        "max_amount_per_debit": row["max_amount_per_debit"], "currency": row["currency"], "status": row["status"],
        "sign_url": row["sign_url"], "signed_at": rfc3339(row["signed_at"], p.settings.tz),
        "ended_at": rfc3339(row["ended_at"], p.settings.tz), "created_at": rfc3339(row["created_at"], p.settings.tz),
    }


def _mandate_channel(p: Platform, merchant_id: str, currency: str):
    for m in methods.channel_methods(p, merchant_id, currency, 1):
        if m.product.mandate:
            return m
    raise MethodNotAvailable("no channel offers agreement pay for this merchant")


def _find(conn: Connection, merchant_id: str, *, agreement_no: str | None = None,
          out_agreement_no: str | None = None, lock: bool = False):
    q = select(agreements).where(agreements.c.merchant_id == merchant_id)
    q = q.where(agreements.c.agreement_no == agreement_no) if agreement_no is not None else q.where(
        agreements.c.out_agreement_no == out_agreement_no)
    return conn.execute(q.with_for_update() if lock else q).mappings().first()


def create_agreement(p: Platform, merchant_id: str, app_id: str, req: NewAgreement) -> tuple[dict, bool]:
    if (req.member_id is None) == (req.buyer_id is None):
        raise InvalidRequest("give exactly one of member_id and buyer_id")
    if not is_valid_amount(req.max_amount_per_debit) or req.max_amount_per_debit <= 0:
        raise InvalidRequest("max_amount_per_debit must be a positive integer of minor units")
    currency = req.currency
    if req.member_id is not None:
        with p.db.read() as conn:
            currency = load_member(conn, merchant_id, req.member_id)["currency"]
    chosen = _mandate_channel(p, merchant_id, currency)
    now = p.clock.now()
    row = {
        "agreement_no": new_id("agr"), "merchant_id": merchant_id, "app_id": app_id,
        "out_agreement_no": req.out_agreement_no, "member_id": req.member_id, "buyer_id": req.buyer_id,
        "max_amount_per_debit": req.max_amount_per_debit, "currency": currency, "notify_url": req.notify_url,
        "channel": chosen.channel_key, "sign_url": None, "status": states.PENDING, "request_hash": req.fingerprint(),
        "next_query_at": now + timedelta(seconds=p.settings.active_query_after_s), "signed_at": None,
        "ended_at": None, "created_at": now, "updated_at": now,
    }

    def tx(conn: Connection):
        existing = _find(conn, merchant_id, out_agreement_no=req.out_agreement_no)
        if existing is not None:
            return dict(existing), False
        conn.execute(insert(agreements).values(**row))
        return row, True

    try:
        agreement, created = p.db.write(tx)
    except IntegrityError:  # a concurrent twin inserted first
        agreement, created = p.db.write(tx)
    if agreement["request_hash"] != row["request_hash"]:
        raise IdempotencyConflict(f"out_agreement_no {req.out_agreement_no} was already used with another request")
    if agreement["sign_url"] is None and agreement["status"] == states.PENDING:
        result = p.channel(agreement["channel"]).create_mandate(CreateMandate(
            mandate_no=agreement["agreement_no"], max_amount_per_debit=agreement["max_amount_per_debit"],
            currency=agreement["currency"]))
        if result.outcome is not Outcome.PENDING or not result.sign_url:
            log.warning("agreement.create_unknown", agreement_no=agreement["agreement_no"], error=result.error)
            raise ChannelUnavailable("the channel did not make the sign page; send the same request again")
        p.db.write(lambda conn: conn.execute(update(agreements).where(
            agreements.c.agreement_no == agreement["agreement_no"]).values(sign_url=result.sign_url)))
        agreement = {**agreement, "sign_url": result.sign_url}
    log.info("agreement.created", agreement_no=agreement["agreement_no"], created=created)
    return view(p, agreement), created


def get_agreement(p: Platform, merchant_id: str, *, agreement_no: str | None = None,
                  out_agreement_no: str | None = None) -> dict:
    with p.db.read() as conn:
        row = _find(conn, merchant_id, agreement_no=agreement_no, out_agreement_no=out_agreement_no)
    if row is None:
        raise AgreementNotFound("no such agreement")
    return view(p, row)


def _event(conn: Connection, p: Platform, row, status: str, now) -> None:
    kind = {states.ACTIVE: "signed", states.REJECTED: "rejected", states.TERMINATED: "terminated",
            states.EXPIRED: "expired"}[status]
    notifications.enqueue(conn, now=now, merchant_id=row["merchant_id"], app_id=row["app_id"],
                          type=f"agreement.{kind}", subject_id=row["agreement_no"], data=view(p, row),
                          notify_url=row["notify_url"], tz=p.settings.tz)


def _move(conn: Connection, p: Platform, row, event: str, now, **values) -> dict | None:
    """One transition of the state table with its event; None when the agreement already moved."""
    if not AGREEMENT_STATES.allows(row["status"], event):
        return None
    status = AGREEMENT_STATES.next(row["status"], event)
    stamp = {"signed_at": now} if status == states.ACTIVE else {"ended_at": now}
    changed = conn.execute(update(agreements).where(
        agreements.c.agreement_no == row["agreement_no"], agreements.c.status == row["status"]).values(
        status=status, updated_at=now, **stamp, **values)).rowcount
    if not changed:
        return None
    moved = {**row, "status": status, "updated_at": now, **stamp, **values}
    _event(conn, p, moved, status, now)
    log.info("agreement.moved", agreement_no=row["agreement_no"], transition=event, status=status)
    return moved


def terminate_agreement(p: Platform, merchant_id: str, agreement_no: str) -> dict:
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        row = _find(conn, merchant_id, agreement_no=agreement_no, lock=True)
        if row is None:
            raise AgreementNotFound("no such agreement")
        if row["status"] == states.TERMINATED:
            return dict(row)
        if not AGREEMENT_STATES.allows(row["status"], "terminate"):
            raise AgreementNotActive(f"the agreement is {row['status']}")
        return _move(conn, p, row, "terminate", now, next_query_at=now) or dict(row)

    row = p.db.write(tx)
    _tell_channel_terminated(p, row)
    return view(p, row)


def _tell_channel_terminated(p: Platform, row) -> None:
    result = p.channel(row["channel"]).terminate_mandate(row["agreement_no"])
    if result.outcome in (Outcome.CLOSED, Outcome.NOT_FOUND, Outcome.FAILED):
        p.db.write(lambda conn: conn.execute(update(agreements).where(
            agreements.c.agreement_no == row["agreement_no"]).values(next_query_at=None)))
    else:
        log.info("agreement.terminate_deferred", agreement_no=row["agreement_no"], error=result.error)


def sync_due_agreements(p: Platform, limit: int = SYNC_BATCH_MAX) -> int:
    """Ask the channel about agreements due for a check, and apply what it says."""
    now = p.clock.now()
    with p.db.read() as conn:
        due = conn.execute(select(agreements).where(
            agreements.c.next_query_at.is_not(None), agreements.c.next_query_at <= now)
            .order_by(agreements.c.next_query_at).limit(limit)).mappings().all()
    for row in due:
        if row["status"] == states.TERMINATED:
            _tell_channel_terminated(p, row)
            continue
        if row["status"] not in states.OPEN_STATES:
            continue
        result = p.channel(row["channel"]).query_mandate(row["agreement_no"])
        event = {Outcome.SUCCEEDED: "sign", Outcome.FAILED: "reject", Outcome.CLOSED: "terminate"}.get(result.outcome)
        expired = (row["status"] == states.PENDING and event is None
                   and row["created_at"] + timedelta(seconds=SIGN_WINDOW_S) <= now)
        if expired:
            event = "expire"
        delay_s = (p.settings.active_query_after_s if row["status"] == states.PENDING and event is None
                   else p.settings.active_query_interval_max_s)

        def tx(conn: Connection, row=row, event=event, delay_s=delay_s) -> None:
            fresh = _find(conn, row["merchant_id"], agreement_no=row["agreement_no"], lock=True)
            after = _move(conn, p, fresh, event, now) if event else None
            status = (after or fresh)["status"]
            next_at = now + timedelta(seconds=delay_s) if status in states.OPEN_STATES else None
            conn.execute(update(agreements).where(agreements.c.agreement_no == row["agreement_no"]).values(
                next_query_at=next_at))

        p.db.write(tx)
        if expired:
            _tell_channel_terminated(p, row)
    return len(due)


# --- debits -------------------------------------------------------------------------------------

def debit(p: Platform, merchant_id: str, app_id: str, agreement_no: str, req: NewDebit) -> tuple[dict, bool]:
    """Create a trade and collect it under the agreement, with no buyer present."""
    with p.db.read() as conn:
        agreement = _find(conn, merchant_id, agreement_no=agreement_no)
    if agreement is None:
        raise AgreementNotFound("no such agreement")
    new_trade = NewTrade(out_trade_no=req.out_trade_no, amount=req.amount, currency=agreement["currency"],
                         subject=req.subject, notify_url=req.notify_url, member_id=agreement["member_id"],
                         buyer_id=agreement["buyer_id"], order_timeout_s=DEBIT_TIMEOUT_S)
    existing = trade_store.find_by_out_trade_no(p, merchant_id, req.out_trade_no)
    if existing is not None:  # a replay: the same debit answers the same trade, whatever happened since
        with p.db.read() as conn:
            linked = conn.execute(select(agreement_debits.c.agreement_no).where(
                agreement_debits.c.trade_no == existing["trade_no"])).scalar_one_or_none()
        if linked != agreement_no:
            raise IdempotencyConflict(f"out_trade_no {req.out_trade_no} was already used for another trade")
        create_trade(p, merchant_id, app_id, new_trade)  # checks the body is the same (else 422)
        return trade_store.get_trade(p, merchant_id, trade_no=existing["trade_no"]), False
    if not is_valid_amount(req.amount) or req.amount <= 0:
        raise InvalidRequest("amount must be a positive integer of minor units")
    if req.amount > agreement["max_amount_per_debit"]:
        raise AgreementLimitExceeded(f"the agreement allows at most {agreement['max_amount_per_debit']} per debit")
    if agreement["status"] != states.ACTIVE:
        raise AgreementNotActive(f"the agreement is {agreement['status']}")
    trade, created = create_trade(p, merchant_id, app_id, new_trade)
    now = p.clock.now()

    def link(conn: Connection) -> bool:
        row = _find(conn, merchant_id, agreement_no=agreement_no, lock=True)
        conn.execute(insert(agreement_debits).values(trade_no=trade["trade_no"], agreement_no=agreement_no,
                                                     created_at=now))
        return row["status"] == states.ACTIVE

    still_active = p.db.write(link)
    row = trade_store.find_by_out_trade_no(p, merchant_id, req.out_trade_no)
    if not still_active:  # terminated between our check and the link: never reaches the channel
        close_pending_trade(p, row["trade_no"], reason="agreement_not_active")
        return trade_store.get_trade(p, merchant_id, trade_no=row["trade_no"]), created
    try:
        start_payment(p, row["cashier_token"], "agreement", mandate_no=agreement_no)
    except PaymentDeclined:
        close_pending_trade(p, row["trade_no"], reason="debit_refused")
    except ChannelUnavailable:
        pass  # unknown is not failed: the active query settles the payment
    return trade_store.get_trade(p, merchant_id, trade_no=row["trade_no"]), created
