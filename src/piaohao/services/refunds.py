"""Refund use cases: create (idempotent, re-entrant) and read (merchant-scoped), plus the ledger
and component helpers that `services/refund_results.py` (what the channel says) shares.
docs/refunds.md has the design and every fund-loss case.

Every transaction here locks the trade row first (`lock_trade`), then the refund row: one lock
order for every refund writer, and the trade lock is what serialises the amount checks.

The amount is *reserved* when the refund is created, in the creating transaction:
- `trades.refunded_amount` and each `trade_components.refunded_amount` grow by a conditional
  UPDATE (`refunded_amount + x <= amount`), so the sum of non-failed refunds never exceeds what
  was paid, in total or per component, whatever the concurrency;
- the merchant's money is held in the ledger (a hold debiting the merchant, crediting the
  channel's clearing account and the members' accounts), so it cannot be settled or paid out
  while the channel is still paying the buyer.
Success posts the hold; failure voids it and gives the reservation back. A refund without a
channel part (internal components only) is final at once, inside the creating transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from piaohao.books.refund import legs_builder, take_from_merchant
from piaohao.db.schema import payments, trade_components, trades
from piaohao.db.schema_refunds import refund_components, refunds
from piaohao.domain import refunds as rs
from piaohao.domain import trades as trade_states
from piaohao.domain.refunds import Component, Draw, allocate
from piaohao.domain.trades import TRADE_STATES
from piaohao.kernel.clock import rfc3339
from piaohao.kernel.errors import (
    IdempotencyConflict,
    InvalidRequest,
    RefundAmountExceeded,
    RefundNotFound,
    TradeNotFound,
    TradeNotRefundable,
)
from piaohao.kernel.ids import new_id
from piaohao.kernel.invariants import require
from piaohao.kernel.money import is_valid_amount
from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.trade_store import lock_trade

log = structlog.get_logger(__name__)

PAID = "paid"  # trade_components.status of a component that has paid


@dataclass(frozen=True)
class NewRefund:
    out_request_no: str
    amount: int
    trade_no: str | None = None
    out_trade_no: str | None = None
    reason: str | None = None
    out_order_no: str | None = None  # which order of a trade with several orders (settlement)


# --- views --------------------------------------------------------------------------------------

def refund_view(p: Platform, r, components: list) -> dict:
    tz = p.settings.tz
    return {
        "refund_no": r["refund_no"],
        "trade_no": r["trade_no"],
        "out_request_no": r["out_request_no"],
        "amount": r["amount"],
        "currency": r["currency"],
        "status": r["status"],
        "reason": r["reason"],
        "created_at": rfc3339(r["created_at"], tz),
        "finished_at": rfc3339(r["finished_at"], tz),
        "components": [{"method": c["method"], "amount": c["amount"]} for c in components],
    }


def components_of(conn: Connection, refund_no: str) -> list:
    """This refund's parts, in the order it drew on them."""
    rows = conn.execute(select(refund_components).where(refund_components.c.refund_no == refund_no)).mappings().all()
    return sorted(rows, key=lambda c: (rs.component_rank(c["kind"], c["method"]), c["method"], c["attempt"]))


def view_of(conn: Connection, p: Platform, r) -> dict:
    return refund_view(p, r, components_of(conn, r["refund_no"]))


# --- reading ------------------------------------------------------------------------------------

def _find_trade(conn: Connection, merchant_id: str, trade_no: str | None, out_trade_no: str | None):
    q = select(trades).where(trades.c.merchant_id == merchant_id, trades.c.purpose == "sale")
    if trade_no is not None:
        q = q.where(trades.c.trade_no == trade_no)
        if out_trade_no is not None:
            q = q.where(trades.c.out_trade_no == out_trade_no)
    elif out_trade_no is not None:
        q = q.where(trades.c.out_trade_no == out_trade_no)
    else:
        raise InvalidRequest("give trade_no or out_trade_no")
    row = conn.execute(q).mappings().first()
    if row is None:
        raise TradeNotFound("no such trade")
    return row


def _by_key(conn: Connection, trade_no: str, out_request_no: str):
    return conn.execute(select(refunds).where(refunds.c.trade_no == trade_no,
                                              refunds.c.out_request_no == out_request_no)).mappings().first()


def get_refund(p: Platform, merchant_id: str, *, refund_no: str | None = None, trade_no: str | None = None,
               out_trade_no: str | None = None, out_request_no: str | None = None) -> dict:
    """A merchant's refund by `refund_no`, or by its trade and `out_request_no`. Another merchant's
    refunds, and the platform's own refunds of stray payments, are not found."""
    with p.db.read() as conn:
        if refund_no is not None:
            row = conn.execute(select(refunds).where(
                refunds.c.refund_no == refund_no, refunds.c.merchant_id == merchant_id,
                refunds.c.kind == rs.KIND_MERCHANT)).mappings().first()
        else:
            if out_request_no is None:
                raise InvalidRequest("give refund_no, or out_request_no with trade_no or out_trade_no")
            try:
                trade = _find_trade(conn, merchant_id, trade_no, out_trade_no)
            except TradeNotFound:
                raise RefundNotFound("no such refund") from None
            row = _by_key(conn, trade["trade_no"], out_request_no)
        if row is None or row["kind"] != rs.KIND_MERCHANT:
            raise RefundNotFound("no such refund")
        return view_of(conn, p, row)


# --- creating -----------------------------------------------------------------------------------

def create_refund(p: Platform, merchant_id: str, req: NewRefund) -> tuple[dict, bool]:
    """Returns (refund view, created). The same request again returns the same refund (created
    False), whatever its status and whatever happened to the trade since: idempotency is checked
    before refundability and amounts."""
    if not is_valid_amount(req.amount, allow_zero=False):
        raise InvalidRequest("amount must be an integer of minor units between 1 and 10^15")
    with p.db.read() as conn:
        trade = _find_trade(conn, merchant_id, req.trade_no, req.out_trade_no)
        existing = _by_key(conn, trade["trade_no"], req.out_request_no)
        if existing is not None:
            return _replay(conn, p, existing, req), False
    try:
        return p.db.write(lambda conn: _create(conn, p, trade["trade_no"], req))
    except IntegrityError:
        # Only reachable if a writer skipped the trade lock: the unique key still decides.
        with p.db.read() as conn:
            existing = _by_key(conn, trade["trade_no"], req.out_request_no)
            if existing is None:
                raise
            return _replay(conn, p, existing, req), False


def _replay(conn: Connection, p: Platform, existing, req: NewRefund) -> dict:
    if existing["kind"] != rs.KIND_MERCHANT or existing["amount"] != req.amount:
        raise IdempotencyConflict(
            f"out_request_no {req.out_request_no} was already used for a refund of another amount")
    return view_of(conn, p, existing)


def _create(conn: Connection, p: Platform, trade_no: str, req: NewRefund) -> tuple[dict, bool]:
    now = p.clock.now()
    t = lock_trade(conn, trade_no)
    existing = _by_key(conn, trade_no, req.out_request_no)
    if existing is not None:  # a twin committed while we waited for the lock
        return _replay(conn, p, existing, req), False
    if t["status"] == trade_states.REFUNDED:
        raise RefundAmountExceeded("the trade is already refunded in full")
    if t["status"] != trade_states.SUCCEEDED:
        raise TradeNotRefundable(f"the trade is {t['status']}: only a paid trade can be refunded")
    amount = req.amount
    reserved = conn.execute(update(trades).where(
        trades.c.trade_no == trade_no, trades.c.status == trade_states.SUCCEEDED,
        trades.c.refunded_amount + amount <= trades.c.amount).values(
        refunded_amount=trades.c.refunded_amount + amount, updated_at=now)).rowcount
    if reserved != 1:
        raise RefundAmountExceeded(
            f"{t['amount'] - t['refunded_amount']} of the paid {t['amount']} is left to refund")
    paid = {(c["attempt"], c["method"]): c for c in conn.execute(select(trade_components).where(
        trade_components.c.trade_no == trade_no, trade_components.c.status == PAID)).mappings()}
    draws = allocate(amount, [Component(c["attempt"], c["method"], c["kind"], c["amount"], c["refunded_amount"])
                              for c in paid.values()])
    reserve_components(conn, trade_no, draws, now)
    channel_draws = [d for d in draws if d.kind == "channel"]
    require(len(channel_draws) <= 1, "a paid trade has at most one channel component")
    channel_part = channel_draws[0].amount if channel_draws else 0
    payment_no = channel = None
    if channel_draws:
        payment_no = paid[(channel_draws[0].attempt, channel_draws[0].method)]["payment_no"]
        channel = conn.execute(select(payments.c.channel).where(payments.c.payment_no == payment_no)).scalar_one()
    refund_no = new_id("rf")
    legs = legs_builder(conn, t, draws, paid, channel)
    row = {
        "refund_no": refund_no, "trade_no": trade_no, "merchant_id": t["merchant_id"], "app_id": t["app_id"],
        "out_request_no": req.out_request_no, "kind": rs.KIND_MERCHANT, "amount": amount,
        "channel_amount": channel_part, "currency": t["currency"], "status": rs.PROCESSING, "reason": req.reason,
        "payment_no": payment_no, "channel": channel, "channel_refund_no": None, "hold_id": None, "attempts": 0,
        "channel_calls": 0, "last_error": None, "next_attempt_at": None, "lease_until": None, "parked_at": None,
        "finished_at": None, "created_at": now, "updated_at": now,
    }
    if channel_part:
        # The API tries the channel right after commit; the worker takes over only if that try
        # never happened (a crash) or left the outcome unknown.
        row["next_attempt_at"] = now + _lease(p)
        row["hold_id"] = take_from_merchant(conn, t, ("refund", refund_no, "reserve"), legs, hold=True, at=now,
                                            out_order_no=req.out_order_no)
    else:
        take_from_merchant(conn, t, ("refund", refund_no, "succeed"), legs, hold=False, at=now,
                           out_order_no=req.out_order_no)
        row.update(status=rs.SUCCEEDED, finished_at=now)
    conn.execute(insert(refunds).values(**row))
    conn.execute(insert(refund_components), [
        {"refund_no": refund_no, "attempt": d.attempt, "method": d.method, "kind": d.kind, "amount": d.amount,
         "member_id": paid[(d.attempt, d.method)]["member_id"], "created_at": now} for d in draws])
    if row["status"] == rs.SUCCEEDED:
        after_success(conn, p, t, row, now)
    log.info("refund.created", refund_no=refund_no, trade_no=trade_no, amount=amount, channel_amount=channel_part,
             status=row["status"])
    return view_of(conn, p, row), True


def _lease(p: Platform) -> timedelta:
    return timedelta(seconds=rs.RefundPolicy.from_settings(p.settings).lease_s)


def reserve_components(conn: Connection, trade_no: str, draws: list[Draw], now: datetime) -> None:
    for d in draws:
        c = trade_components.c
        done = conn.execute(update(trade_components).where(
            c.trade_no == trade_no, c.attempt == d.attempt, c.method == d.method, c.status == PAID,
            c.refunded_amount + d.amount <= c.amount).values(
            refunded_amount=c.refunded_amount + d.amount, updated_at=now)).rowcount
        # The trade row is locked and the allocation read under it: a miss is a broken invariant.
        require(done == 1, f"component {d.method} of {trade_no} cannot take {d.amount} back")


def release_components(conn: Connection, trade_no: str, parts: list, now: datetime) -> None:
    for part in parts:
        c = trade_components.c
        done = conn.execute(update(trade_components).where(
            c.trade_no == trade_no, c.attempt == part["attempt"], c.method == part["method"],
            c.refunded_amount >= part["amount"]).values(
            refunded_amount=c.refunded_amount - part["amount"], updated_at=now)).rowcount
        require(done == 1, f"component {part['method']} of {trade_no} has less reserved than {part['amount']}")


def after_success(conn: Connection, p: Platform, t, r, now: datetime) -> None:
    """A merchant refund just succeeded: the trade may now be refunded in full; tell the merchant."""
    succeeded = conn.execute(select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
        refunds.c.trade_no == t["trade_no"], refunds.c.kind == rs.KIND_MERCHANT,
        refunds.c.status == rs.SUCCEEDED)).scalar_one()
    require(succeeded <= t["amount"], f"trade {t['trade_no']}: refunds {succeeded} exceed {t['amount']}")
    if succeeded == t["amount"] and t["status"] == trade_states.SUCCEEDED:
        conn.execute(update(trades).where(trades.c.trade_no == t["trade_no"],
                                          trades.c.status == trade_states.SUCCEEDED).values(
            status=TRADE_STATES.next(t["status"], "refund_full"), updated_at=now))
    notifications.enqueue(conn, now=now, merchant_id=t["merchant_id"], app_id=t["app_id"], type="refund.succeeded",
                          subject_id=r["refund_no"], data=view_of(conn, p, r), notify_url=t["notify_url"],
                          tz=p.settings.tz)


# --- statements ---------------------------------------------------------------------------------

def statement_refunds(conn: Connection, merchant_id: str, start: datetime, end: datetime) -> list:
    """The merchant's refunds that reached a final state in [start, end), with their trade's key.
    Refunds of stray payments are the platform's, not the merchant's: never listed."""
    return conn.execute(
        select(refunds, trades.c.out_trade_no).join(trades, trades.c.trade_no == refunds.c.trade_no)
        .where(refunds.c.merchant_id == merchant_id, refunds.c.kind == rs.KIND_MERCHANT,
               refunds.c.status.in_(rs.FINAL_STATES), refunds.c.finished_at >= start, refunds.c.finished_at < end)
        .order_by(refunds.c.finished_at, refunds.c.refund_no)).mappings().all()
