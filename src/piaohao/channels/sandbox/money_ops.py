"""Refunds and payouts at the sandbox channel: money leaving a merchant.

The refundable total of a payment can never exceed what was paid: every refund reserves its
amount on the payment row with a conditional update (`refunded_amount + amount <= amount`), in
the same transaction that inserts the refund, so concurrent refunds cannot overdraw it. Refunds
and payouts are idempotent on the merchant's key (`out_refund_no`, `out_payout_no`), enforced
by unique constraints.

The sandbox bank pays every account except: a number ending in `0002` is refused (final), and
one ending in `0003` is paid but the answer to the first call is lost (the app sleeps past the
caller's timeout), so the caller must query to learn it was paid.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from .faults import REFUND_KINDS
from .outbox import enqueue, new_notify_id, payout_body, refund_body
from .parts import ServiceParts
from .wire import (
    PAY_SUCCESS,
    PAYOUT_FAIL,
    PAYOUT_SUCCESS,
    REFUND_FAIL,
    REFUND_PROCESSING,
    REFUND_SUCCESS,
    SandboxError,
    format_time,
    new_number,
    optional_text,
    require_amount,
    require_currency,
    require_key,
    require_text,
    require_url,
)

__all__ = ["refund", "refund_query", "payout", "payout_query", "settle_due_refunds"]

log = structlog.get_logger(__name__)

REFUSED_SUFFIX = "0002"
ANSWER_LOST_SUFFIX = "0003"
ACCOUNT_NUMBER_LEN_MAX = 34


def _refund_json(r) -> dict:
    return {
        "refund_id": r["refund_id"], "out_refund_no": r["out_refund_no"], "out_trade_no": r["out_trade_no"],
        "txn_no": r["txn_no"], "amount": r["amount"], "currency": r["currency"], "status": r["status"],
        "finished_at": format_time(r["finished_at"]), "fail_reason": r["fail_reason"],
    }


def settle_due_refunds(conn: Connection, svc: ServiceParts, now: datetime) -> None:
    """PROCESSING refunds whose time has come become SUCCESS (their notification is already queued)."""
    r = svc.t.refunds
    conn.execute(update(r).where(r.c.status == REFUND_PROCESSING, r.c.settle_at <= now)
                 .values(status=REFUND_SUCCESS, finished_at=r.c.settle_at))


def _refund_by_key(conn: Connection, svc: ServiceParts, mch_id: str, out_refund_no: str):
    r = svc.t.refunds
    return conn.execute(select(r).where(r.c.mch_id == mch_id, r.c.out_refund_no == out_refund_no)).mappings().first()


def refund(svc: ServiceParts, mch_id: str, data: dict) -> dict:
    out_trade_no, out_refund_no = require_key(data, "out_trade_no"), require_key(data, "out_refund_no")
    amount, currency = require_amount(data), require_currency(data)
    reason = optional_text(data, "reason")
    notify_url = require_url(data, "notify_url", optional=True)
    now = svc.clock.now()

    def existing(conn: Connection) -> dict | None:
        settle_due_refunds(conn, svc, now)
        found = _refund_by_key(conn, svc, mch_id, out_refund_no)
        if found is None:
            return None
        if found["out_trade_no"] != out_trade_no or found["amount"] != amount or found["currency"] != currency:
            raise SandboxError(409, "REFUND_CONFLICT", "out_refund_no already used for another refund")
        return _refund_json(found)

    def create(conn: Connection) -> dict:
        found = existing(conn)
        if found is not None:
            return found
        p = svc.t.payments
        pay = conn.execute(select(p).where(p.c.mch_id == mch_id, p.c.out_trade_no == out_trade_no)).first()
        if pay is None:
            raise SandboxError(404, "TRADE_NOT_EXIST", "no such out_trade_no", {"out_trade_no": out_trade_no})
        if pay.status != PAY_SUCCESS:
            raise SandboxError(409, "TRADE_NOT_PAID", f"payment is {pay.status}")
        if currency != pay.currency:
            raise SandboxError(400, "CURRENCY_MISMATCH", "currency differs from the payment's")
        fault = svc.faults.take("refund", out_trade_no, REFUND_KINDS, conn=conn)
        row = {"refund_id": new_number("R", now), "mch_id": mch_id, "out_refund_no": out_refund_no,
               "out_trade_no": out_trade_no, "txn_no": pay.txn_no, "amount": amount, "currency": currency,
               "reason": reason, "notify_url": notify_url, "created_at": now, "settle_at": None,
               "finished_at": now, "status": REFUND_SUCCESS, "fail_reason": None}
        if fault is not None and fault.kind == "fail":
            row.update(status=REFUND_FAIL, fail_reason="REFUSED_BY_CHANNEL")
        else:
            reserved = conn.execute(
                update(p).where(p.c.txn_no == pay.txn_no, p.c.status == PAY_SUCCESS,
                                p.c.refunded_amount + amount <= p.c.amount)
                .values(refunded_amount=p.c.refunded_amount + amount)).rowcount
            if reserved != 1:
                raise SandboxError(409, "REFUND_AMOUNT_EXCEEDED", "refunds would exceed the paid amount")
            if fault is not None and fault.kind == "processing":
                row.update(status=REFUND_PROCESSING, settle_at=now + timedelta(seconds=fault.delay_s),
                           finished_at=None)
        conn.execute(insert(svc.t.refunds).values(**row))
        settles_at = row["settle_at"] or now
        body = refund_body(new_notify_id(), row, status=REFUND_SUCCESS if row["status"] != REFUND_FAIL else REFUND_FAIL,
                           finished_at=row["finished_at"] or settles_at, now=now)
        enqueue(conn, svc.t, body=body, url=notify_url or pay.notify_url, out_trade_no=out_trade_no, now=now,
                delay_s=(settles_at - now).total_seconds())
        log.info("sandbox.refund.created", mch_id=mch_id, out_refund_no=out_refund_no, amount=amount,
                 status=row["status"])
        return _refund_json(row)

    try:
        return svc.store.write(create)
    except IntegrityError:
        found = svc.store.write(existing)  # a concurrent twin won the unique key
        assert found is not None, "unique violation without a row"
        return found


def refund_query(svc: ServiceParts, mch_id: str, data: dict) -> dict:
    out_refund_no = require_key(data, "out_refund_no")
    now = svc.clock.now()

    def work(conn: Connection) -> dict:
        settle_due_refunds(conn, svc, now)
        found = _refund_by_key(conn, svc, mch_id, out_refund_no)
        if found is None:
            raise SandboxError(404, "REFUND_NOT_EXIST", "no such out_refund_no", {"out_refund_no": out_refund_no})
        return _refund_json(found)

    return svc.store.write(work)


def refund_trade_key(svc: ServiceParts, mch_id: str, data: dict) -> str | None:
    """The out_trade_no a refund query is about (what per-payment faults match), if known."""
    out_refund_no = data.get("out_refund_no")
    if not isinstance(out_refund_no, str):
        return None
    with svc.store.read() as conn:
        found = _refund_by_key(conn, svc, mch_id, out_refund_no)
    return None if found is None else found["out_trade_no"]


def _masked(number: str) -> str:
    return "*" * max(0, len(number) - 4) + number[-4:]


def _payout_json(r) -> dict:
    return {
        "payout_id": r["payout_id"], "out_payout_no": r["out_payout_no"], "amount": r["amount"],
        "currency": r["currency"], "status": r["status"], "finished_at": format_time(r["finished_at"]),
        "fail_reason": r["fail_reason"], "account_number_masked": _masked(r["account_number"]),
    }


def _bank_account(data: dict) -> tuple[str, str, str]:
    account = data.get("bank_account")
    if not isinstance(account, dict):
        raise SandboxError(400, "INVALID_PARAM", "bank_account must be {bank, number, name}")
    number = require_text(account, "number", ACCOUNT_NUMBER_LEN_MAX)
    if not number.isdigit():
        raise SandboxError(400, "INVALID_PARAM", "bank_account.number must be digits")
    return require_text(account, "bank"), number, require_text(account, "name")


def _payout_by_key(conn: Connection, svc: ServiceParts, mch_id: str, out_payout_no: str):
    t = svc.t.payouts
    return conn.execute(select(t).where(t.c.mch_id == mch_id, t.c.out_payout_no == out_payout_no)).mappings().first()


def payout(svc: ServiceParts, mch_id: str, data: dict) -> tuple[dict, bool]:
    """Pay out to a bank account. Returns the record and whether the answer is to be lost."""
    out_payout_no = require_key(data, "out_payout_no")
    amount, currency = require_amount(data), require_currency(data)
    bank, number, name = _bank_account(data)
    notify_url = require_url(data, "notify_url", optional=True)
    now = svc.clock.now()
    t = svc.t.payouts

    def existing(conn: Connection) -> dict | None:
        found = _payout_by_key(conn, svc, mch_id, out_payout_no)
        if found is None:
            return None
        if found["amount"] != amount or found["currency"] != currency or found["account_number"] != number:
            raise SandboxError(409, "PAYOUT_CONFLICT", "out_payout_no already used for another payout")
        return _payout_json(found)

    def create(conn: Connection) -> tuple[dict, bool]:
        found = existing(conn)
        if found is not None:
            return found, False
        refused = number.endswith(REFUSED_SUFFIX)
        row = {"payout_id": new_number("P", now), "mch_id": mch_id, "out_payout_no": out_payout_no, "amount": amount,
               "currency": currency, "bank": bank, "account_number": number, "account_name": name,
               "notify_url": notify_url, "status": PAYOUT_FAIL if refused else PAYOUT_SUCCESS,
               "fail_reason": "ACCOUNT_INVALID" if refused else None, "created_at": now, "finished_at": now}
        conn.execute(insert(t).values(**row))
        if notify_url:
            enqueue(conn, svc.t, body=payout_body(new_notify_id(), row, now=now), url=notify_url,
                    out_trade_no=out_payout_no, now=now)
        log.info("sandbox.payout.created", mch_id=mch_id, out_payout_no=out_payout_no, amount=amount,
                 account=_masked(number), status=row["status"])
        return _payout_json(row), number.endswith(ANSWER_LOST_SUFFIX)

    try:
        return svc.store.write(create)
    except IntegrityError:
        found = svc.store.write(existing)
        assert found is not None, "unique violation without a row"
        return found, False


def payout_query(svc: ServiceParts, mch_id: str, data: dict) -> dict:
    out_payout_no = require_key(data, "out_payout_no")
    with svc.store.read() as conn:
        found = _payout_by_key(conn, svc, mch_id, out_payout_no)
    if found is None:
        raise SandboxError(404, "PAYOUT_NOT_EXIST", "no such out_payout_no", {"out_payout_no": out_payout_no})
    return _payout_json(found)
