"""Sub-merchants (二級商戶) and split receivers: registration (idempotent), reading with balances,
and the sub-merchant state table. Identity and bank numbers are stored sealed (`db.sealed`) with a
masked copy: only the masked copy is ever shown or logged; the bank number is opened only to pay."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, select, update

from piaohao import ledger
from piaohao.books import chart
from piaohao.db.inserts import Raced, dialect_insert, insert_if_absent, insert_once
from piaohao.db.schema_clearing import receiver_counters, split_receivers, sub_merchants
from piaohao.db.sealed import open_column, seal_column
from piaohao.domain.bank_accounts import BankAccount, mask, mask_id
from piaohao.domain.states import IllegalTransition, StateMachine
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InvalidRequest,
    ReceiverLimitExceeded,
    ReceiverNotFound,
    SubMerchantNotFound,
    SubMerchantStateConflict,
)
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform
from piaohao.services.members import fingerprint

log = structlog.get_logger(__name__)

PENDING_REVIEW, ACTIVE, FROZEN, CLOSED = "pending_review", "active", "frozen", "closed"
SUB_MERCHANT_STATES = StateMachine("sub_merchant", {
    (PENDING_REVIEW, "approve"): ACTIVE,
    (ACTIVE, "freeze"): FROZEN,
    (FROZEN, "unfreeze"): ACTIVE,
    (PENDING_REVIEW, "close"): CLOSED,
    (ACTIVE, "close"): CLOSED,
    (FROZEN, "close"): CLOSED,
}, final={CLOSED})
KYC_TYPES = ("individual", "enterprise")


@dataclass(frozen=True)
class NewSubMerchant:
    out_sub_merchant_id: str
    name: str
    kyc_type: str
    legal_name: str
    id_number: str
    bank_account: BankAccount
    settle_after_days: int = 365
    payout_every_days: int | None = None

    def fingerprint(self) -> str:
        a = self.bank_account
        return fingerprint(name=self.name, kyc=[self.kyc_type, self.legal_name, self.id_number],
                           bank_account=[a.bank, a.number, a.name], settle_after_days=self.settle_after_days,
                           payout_every_days=self.payout_every_days)


def _balances(conn: Connection, pending_name: str | None, settled_name: str, owner_id: str, currency: str) -> dict:
    out = {}
    for key, name in (("pending_settlement", pending_name), ("settled", settled_name)):
        if name is None:
            continue
        account = chart.lookup(conn, name, owner_id, currency)
        out[key] = ledger.balance(conn, account.account_id).available if account else 0
    return out


def sub_merchant_view(conn: Connection, p: Platform, r, currency: str = "CNY") -> dict:
    return {
        "sub_merchant_id": r["sub_merchant_id"], "out_sub_merchant_id": r["out_sub_merchant_id"], "name": r["name"],
        "kyc": {"type": r["kyc_type"], "legal_name": r["legal_name"], "id_number": r["id_number_masked"]},
        "bank_account": {"bank": r["bank"], "number": r["account_number_masked"], "name": r["account_name"]},
        "status": r["status"], "settle_after_days": r["settle_after_days"],
        "payout_every_days": r["payout_every_days"], "currency": currency,
        "balances": _balances(conn, "sub_merchant_pending_settlement", "sub_merchant_settled", r["sub_merchant_id"],
                              currency),
        "created_at": rfc3339(r["created_at"], p.settings.tz), "updated_at": rfc3339(r["updated_at"], p.settings.tz),
    }


def create_sub_merchant(p: Platform, merchant_id: str, req: NewSubMerchant) -> tuple[dict, bool]:
    if req.kyc_type not in KYC_TYPES:
        raise InvalidRequest("kyc.type must be individual or enterprise")
    if type(req.settle_after_days) is not int or not 0 <= req.settle_after_days <= 365:
        raise InvalidRequest("settle_after_days must be 0-365")
    if req.payout_every_days is not None and not 1 <= req.payout_every_days <= 365:
        raise InvalidRequest("payout_every_days must be 1-365")
    digest = req.fingerprint()
    now = p.clock.now()
    a = req.bank_account
    sub_merchant_id, sealer = new_id("sub"), p.sealer()
    row = {"sub_merchant_id": sub_merchant_id, "merchant_id": merchant_id,
           "out_sub_merchant_id": req.out_sub_merchant_id, "name": req.name, "kyc_type": req.kyc_type,
           "legal_name": req.legal_name,
           "id_number_sealed": seal_column(sealer, "sub_merchants", "id_number_sealed", sub_merchant_id,
                                           req.id_number),
           "id_number_masked": mask_id(req.id_number), "bank": a.bank,
           "account_number_sealed": seal_column(sealer, "sub_merchants", "account_number_sealed", sub_merchant_id,
                                                a.number),
           "account_number_masked": mask(a.number), "account_name": a.name, "settle_after_days": req.settle_after_days,
           "payout_every_days": req.payout_every_days, "status": PENDING_REVIEW, "request_hash": digest,
           "created_at": now, "updated_at": now}

    def tx(conn: Connection):
        if insert_if_absent(conn, sub_merchants, row, ["merchant_id", "out_sub_merchant_id"]):
            return sub_merchant_view(conn, p, row), True
        existing = conn.execute(select(sub_merchants).where(
            sub_merchants.c.merchant_id == merchant_id,
            sub_merchants.c.out_sub_merchant_id == req.out_sub_merchant_id)).mappings().first()
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(
                f"out_sub_merchant_id {req.out_sub_merchant_id} was already used with a different request")
        return sub_merchant_view(conn, p, existing), False

    view, created = p.db.write(tx)
    if created:
        log.info("sub_merchant.created", sub_merchant_id=row["sub_merchant_id"], merchant_id=merchant_id,
                 id_number=mask_id(req.id_number), account=mask(a.number))
    return view, created


def get_sub_merchant(p: Platform, merchant_id: str | None, sub_merchant_id: str) -> dict:
    with p.db.read() as conn:
        r = find_sub_merchant(conn, merchant_id, sub_merchant_id)
        return sub_merchant_view(conn, p, r)


def sub_merchant_bank_account(p: Platform, r) -> BankAccount:
    """The sub-merchant's registered bank account in full (opened only to pay out to it)."""
    number = open_column(p.sealer(), "sub_merchants", "account_number_sealed", r["sub_merchant_id"],
                         r["account_number_sealed"])
    return BankAccount(r["bank"], number, r["account_name"])


def find_sub_merchant(conn: Connection, merchant_id: str | None, sub_merchant_id: str):
    q = select(sub_merchants).where(sub_merchants.c.sub_merchant_id == sub_merchant_id)
    if merchant_id is not None:
        q = q.where(sub_merchants.c.merchant_id == merchant_id)
    r = conn.execute(q).mappings().first()
    if r is None:
        raise SubMerchantNotFound("no such sub-merchant")
    return r


def change_status(p: Platform, sub_merchant_id: str, event: str) -> dict:
    """Operator action (approve, freeze, unfreeze, close) by the state table; a conditional UPDATE."""
    def tx(conn: Connection):
        r = find_sub_merchant(conn, None, sub_merchant_id)
        try:
            new = SUB_MERCHANT_STATES.next(r["status"], event)
        except IllegalTransition:
            raise SubMerchantStateConflict(f"sub-merchant is {r['status']}: cannot {event}") from None
        if event == "close":
            balances = _balances(conn, "sub_merchant_pending_settlement", "sub_merchant_settled", sub_merchant_id,
                                 "CNY")
            if any(balances.values()):
                raise SubMerchantStateConflict(f"sub-merchant still holds money {balances}: settle and pay it out "
                                               "before closing")
        now = p.clock.now()
        done = conn.execute(update(sub_merchants).where(
            sub_merchants.c.sub_merchant_id == sub_merchant_id, sub_merchants.c.status == r["status"]).values(
            status=new, updated_at=now)).rowcount
        if done != 1:
            raise SubMerchantStateConflict("the sub-merchant changed meanwhile; try again")
        return sub_merchant_view(conn, p, dict(r, status=new, updated_at=now))

    view = p.db.write(tx)
    log.info("sub_merchant.status", sub_merchant_id=sub_merchant_id, action=event, status=view["status"])
    return view


# --- split receivers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewReceiver:
    out_receiver_id: str
    name: str
    bank_account: BankAccount

    def fingerprint(self) -> str:
        a = self.bank_account
        return fingerprint(name=self.name, bank_account=[a.bank, a.number, a.name])


def receiver_view(conn: Connection, p: Platform, r, currency: str = "CNY") -> dict:
    return {"receiver_id": r["receiver_id"], "out_receiver_id": r["out_receiver_id"], "name": r["name"],
            "bank_account": {"bank": r["bank"], "number": r["account_number_masked"], "name": r["account_name"]},
            "currency": currency,
            "balances": _balances(conn, None, "receiver_settled", r["receiver_id"], currency),
            "created_at": rfc3339(r["created_at"], p.settings.tz)}


def create_receiver(p: Platform, merchant_id: str, req: NewReceiver) -> tuple[dict, bool]:
    """At most `split_receivers_max` per merchant: a per-merchant counter row grows by a conditional
    UPDATE in the transaction that inserts the receiver (so the limit holds under concurrency)."""
    digest = req.fingerprint()
    now = p.clock.now()
    a = req.bank_account
    receiver_id = new_id("rcv")
    row = {"receiver_id": receiver_id, "merchant_id": merchant_id, "out_receiver_id": req.out_receiver_id,
           "name": req.name, "bank": a.bank,
           "account_number_sealed": seal_column(p.sealer(), "split_receivers", "account_number_sealed", receiver_id,
                                                a.number),
           "account_number_masked": mask(a.number), "account_name": a.name,
           "request_hash": digest, "created_at": now}
    limit = p.settings.split_receivers_max

    def replay(conn: Connection):
        existing = conn.execute(select(split_receivers).where(
            split_receivers.c.merchant_id == merchant_id,
            split_receivers.c.out_receiver_id == req.out_receiver_id)).mappings().first()
        if existing is None:
            return None
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(f"out_receiver_id {req.out_receiver_id} was already used with a different "
                                      "request")
        return receiver_view(conn, p, existing)

    def tx(conn: Connection):
        again = replay(conn)
        if again is not None:
            return again, False
        conn.execute(dialect_insert(conn, receiver_counters).values(merchant_id=merchant_id, receivers=0)
                     .on_conflict_do_nothing(index_elements=["merchant_id"]))
        c = receiver_counters.c
        counted = conn.execute(update(receiver_counters).where(c.merchant_id == merchant_id, c.receivers < limit)
                               .values(receivers=c.receivers + 1)).rowcount
        if counted != 1:
            raise ReceiverLimitExceeded(f"a merchant may have at most {limit} split receivers")
        insert_once(conn, split_receivers, row, ["merchant_id", "out_receiver_id"])  # a twin won: roll back
        return receiver_view(conn, p, row), True

    try:
        return p.db.write(tx)
    except Raced:
        with p.db.read() as conn:
            return replay(conn), False


def get_receiver(p: Platform, merchant_id: str, receiver_id: str) -> dict:
    with p.db.read() as conn:
        r = conn.execute(select(split_receivers).where(split_receivers.c.receiver_id == receiver_id,
                                                       split_receivers.c.merchant_id == merchant_id)
                         ).mappings().first()
        if r is None:
            raise ReceiverNotFound("no such split receiver")
        return receiver_view(conn, p, r)
