"""What channels say about refunds, applied idempotently (one transaction per answer), and the
worker's bookkeeping between tries. docs/refunds.md has the design.

Every transaction here locks the trade row first, then the refund row, like `services/refunds.py`.
A final answer about a refund that is already final changes nothing (a duplicate), except the one
case the money demands: the channel paid a refund we had given up ("late success").
"""

from __future__ import annotations

from datetime import datetime

import structlog
from prometheus_client import Counter
from sqlalchemy import Connection, select, update

from piaohao import ledger
from piaohao.alerts import WARNING, raise_alert
from piaohao.books import refund as refund_book
from piaohao.books import stray
from piaohao.books.refund import legs_builder, take_from_merchant
from piaohao.channels.spi import Outcome, RefundResult
from piaohao.db.schema import trade_components, trades
from piaohao.db.schema_refunds import refunds
from piaohao.domain import refunds as rs
from piaohao.domain import trades as trade_states
from piaohao.domain.refunds import REFUND_STATES, Draw
from piaohao.kernel.errors import InsufficientBalance
from piaohao.kernel.invariants import require
from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.refunds import (
    PAID,
    after_success,
    components_of,
    release_components,
    reserve_components,
    view_of,
)
from piaohao.services.trade_store import lock_trade

log = structlog.get_logger(__name__)
REFUND_RESULTS = Counter("piaohao_refund_results_total", "Channel answers about refunds applied, by source and effect",
                         ["source", "effect"])
ERROR_MAX = 500


def apply_refund_result(p: Platform, refund_no: str, result: RefundResult, *, source: str) -> str:
    """Apply one channel answer about a refund, idempotently. Returns what it did."""
    effect = p.db.write(lambda conn: _apply(conn, p, refund_no, result, source))
    REFUND_RESULTS.labels(source, effect).inc()
    log.info("refund.channel_result", refund_no=refund_no, source=source, outcome=str(result.outcome), effect=effect)
    return effect


def _apply(conn: Connection, p: Platform, refund_no: str, result: RefundResult, source: str) -> str:
    now = p.clock.now()
    head = conn.execute(select(refunds.c.trade_no).where(refunds.c.refund_no == refund_no)).first()
    if head is None:
        raise_alert(conn, now=now, kind="unknown_refund", subject_type="refund", subject_id=refund_no[:64],
                    message=f"channel reported {result.outcome} for a refund we do not know",
                    details={"source": source, "amount": result.amount})
        return "unknown_refund"
    t = lock_trade(conn, head.trade_no)
    r = conn.execute(select(refunds).where(refunds.c.refund_no == refund_no).with_for_update()).mappings().first()
    if result.outcome == Outcome.SUCCEEDED:
        if result.amount is not None and result.amount != r["channel_amount"]:
            raise_alert(conn, now=now, kind="refund_amount_mismatch", subject_type="refund", subject_id=refund_no,
                        message=(f"channel says {result.amount} was refunded, our record says "
                                 f"{r['channel_amount']}; nothing changed"), details={"source": source})
            return "mismatch"
        if r["status"] == rs.SUCCEEDED:
            if not r["channel_refund_no"] and result.channel_refund_no:
                conn.execute(update(refunds).where(refunds.c.refund_no == refund_no).values(
                    channel_refund_no=result.channel_refund_no, updated_at=now))
            return "duplicate"
        if r["status"] == rs.PROCESSING:
            _succeed(conn, p, t, r, result, now)
            return "succeeded"
        return _late_success(conn, p, t, r, result, now)
    if result.outcome == Outcome.FAILED:
        if r["status"] == rs.PROCESSING:
            _fail(conn, p, t, r, result.error or "the channel refused the refund", now)
            return "failed"
        if r["status"] == rs.SUCCEEDED:
            raise_alert(conn, now=now, kind="refund_contradiction", subject_type="refund", subject_id=refund_no,
                        message="channel says failed for a refund recorded as succeeded; nothing changed",
                        details={"source": source, "error": result.error})
            return "contradiction"
        return "ignored"
    return "ignored"


def _finish(conn: Connection, r, event: str, now: datetime, *, channel_refund_no: str | None = None,
            error: str | None = None, parked: bool = False) -> dict:
    values = {"status": REFUND_STATES.next(r["status"], event), "finished_at": now, "next_attempt_at": None,
              "lease_until": None, "channel_refund_no": channel_refund_no or r["channel_refund_no"],
              "last_error": (error or "")[:ERROR_MAX] or r["last_error"], "updated_at": now}
    if parked:
        values["parked_at"] = now
    done = conn.execute(update(refunds).where(refunds.c.refund_no == r["refund_no"],
                                              refunds.c.status == r["status"]).values(**values)).rowcount
    require(done == 1, "the refund row is locked: the conditional update cannot miss")
    return dict(r, **values)


def _stray_to_clearing(conn: Connection, r, operation: str, amount: int, now: datetime) -> None:
    stray.returned(conn, refund_no=r["refund_no"], operation=operation, channel=r["channel"],
                   currency=r["currency"], amount=amount, at=now)


def _succeed(conn: Connection, p: Platform, t, r, result: RefundResult, now: datetime) -> None:
    if r["kind"] == rs.KIND_STRAY:
        _stray_to_clearing(conn, r, "succeed", r["amount"], now)
        _finish(conn, r, "succeed", now, channel_refund_no=result.channel_refund_no)
        return
    if r["hold_id"]:
        refund_book.paid_by_channel(conn, r["hold_id"], refund_no=r["refund_no"], at=now)
    done = _finish(conn, r, "succeed", now, channel_refund_no=result.channel_refund_no)
    after_success(conn, p, t, done, now)


def _fail(conn: Connection, p: Platform, t, r, error: str, now: datetime) -> None:
    if r["kind"] == rs.KIND_STRAY:
        _finish(conn, r, "fail", now, error=error, parked=True)
        raise_alert(conn, now=now, kind="stray_refund_failed", subject_type="refund", subject_id=r["refund_no"],
                    message=(f"the channel will not return stray payment {r['payment_no']} ({r['amount']}); "
                             f"the money stays in suspense: {error}"),
                    details={"trade_no": r["trade_no"], "payment_no": r["payment_no"]})
        return
    if r["hold_id"]:
        refund_book.refused_by_channel(conn, r["hold_id"], at=now)
    released = conn.execute(update(trades).where(
        trades.c.trade_no == r["trade_no"], trades.c.refunded_amount >= r["amount"]).values(
        refunded_amount=trades.c.refunded_amount - r["amount"], updated_at=now)).rowcount
    require(released == 1, f"trade {r['trade_no']} has less reserved than refund {r['refund_no']}")
    release_components(conn, r["trade_no"], components_of(conn, r["refund_no"]), now)
    done = _finish(conn, r, "fail", now, error=error, parked=True)
    raise_alert(conn, now=now, kind="refund_failed", subject_type="refund", subject_id=r["refund_no"],
                message=f"refund {r['refund_no']} of trade {r['trade_no']} failed: {error}; the amount is "
                        "refundable again", details={"amount": r["amount"], "error": error})
    notifications.enqueue(conn, now=now, merchant_id=t["merchant_id"], app_id=t["app_id"], type="refund.failed",
                          subject_id=r["refund_no"], data=view_of(conn, p, done), notify_url=t["notify_url"],
                          tz=p.settings.tz)


def _late_success(conn: Connection, p: Platform, t, r, result: RefundResult, now: datetime) -> str:
    """The channel paid out a refund we had already failed (its answer came too late). The money
    left, so the books must say so: if the trade can still take the refund back, it becomes
    `succeeded` as if it never failed; otherwise the platform carries it in suspense and an
    operator must recover it."""
    if r["kind"] == rs.KIND_STRAY:
        _stray_to_clearing(conn, r, "succeed", r["amount"], now)
        _finish(conn, r, "succeed", now, channel_refund_no=result.channel_refund_no)
        raise_alert(conn, now=now, kind="refund_succeeded_after_failure", severity=WARNING, subject_type="refund",
                    subject_id=r["refund_no"], message="a stray refund we had failed was paid by the channel")
        return "late_succeeded"
    if ledger.get_entry(conn, stray.late_refund_key(r["refund_no"])) is not None:
        return "duplicate"  # already carried in suspense: an operator has it
    parts = components_of(conn, r["refund_no"])
    if _can_take_back(conn, t, r, parts):
        paid = {(c["attempt"], c["method"]): c for c in conn.execute(select(trade_components).where(
            trade_components.c.trade_no == r["trade_no"], trade_components.c.status == PAID)).mappings()}
        draws = [Draw(c["attempt"], c["method"], c["kind"], c["amount"]) for c in parts]
        build = legs_builder(conn, t, draws, paid, r["channel"])
        try:
            take_from_merchant(conn, t, ("refund", r["refund_no"], "late_succeed"), build, hold=False, at=now)
        except InsufficientBalance:
            pass  # nothing written: fall through to suspense
        else:
            conn.execute(update(trades).where(trades.c.trade_no == r["trade_no"]).values(
                refunded_amount=trades.c.refunded_amount + r["amount"], updated_at=now))
            reserve_components(conn, r["trade_no"], draws, now)
            done = _finish(conn, r, "succeed", now, channel_refund_no=result.channel_refund_no)
            after_success(conn, p, t, done, now)
            raise_alert(conn, now=now, kind="refund_succeeded_after_failure", severity=WARNING,
                        subject_type="refund", subject_id=r["refund_no"],
                        message=f"refund {r['refund_no']} was paid by the channel after we had failed it; "
                                "it is now succeeded and the merchant told so")
            return "late_succeeded"
    stray.carried_in_suspense(conn, refund_no=r["refund_no"], channel=r["channel"], currency=r["currency"],
                              amount=r["channel_amount"], at=now)
    conn.execute(update(refunds).where(refunds.c.refund_no == r["refund_no"]).values(
        channel_refund_no=result.channel_refund_no or r["channel_refund_no"], updated_at=now))
    raise_alert(conn, now=now, kind="refund_succeeded_after_failure", subject_type="refund",
                subject_id=r["refund_no"],
                message=(f"refund {r['refund_no']} ({r['channel_amount']}) was paid by the channel after it "
                         "failed, and the trade can no longer take it back: carried in suspense, recover it"),
                details={"trade_no": r["trade_no"]})
    return "late_to_suspense"


def _can_take_back(conn: Connection, t, r, parts: list) -> bool:
    if t["status"] != trade_states.SUCCEEDED or t["refunded_amount"] + r["amount"] > t["amount"]:
        return False
    for part in parts:
        left = conn.execute(select(trade_components.c.amount - trade_components.c.refunded_amount).where(
            trade_components.c.trade_no == r["trade_no"], trade_components.c.attempt == part["attempt"],
            trade_components.c.method == part["method"], trade_components.c.status == PAID)).scalar_one_or_none()
        if left is None or left < part["amount"]:
            return False
    return True


# --- bookkeeping for the worker ------------------------------------------------------------------

def note_channel_call(p: Platform, refund_no: str) -> None:
    """Counted *before* the call: after a crash mid-call, the next try asks the channel first."""
    p.db.write(lambda conn: conn.execute(update(refunds).where(
        refunds.c.refund_no == refund_no, refunds.c.status == rs.PROCESSING).values(
        channel_calls=refunds.c.channel_calls + 1, updated_at=p.clock.now())))


def note_inconclusive(p: Platform, refund_no: str, error: str, *, park_why: str | None = None) -> None:
    """The channel's answer settled nothing (unknown, or still processing). With `park_why`, the
    tries are used up: raise one alert for an operator (the refund keeps being queried)."""
    now = p.clock.now()

    def tx(conn: Connection) -> None:
        values = {"last_error": error[:ERROR_MAX], "updated_at": now}
        r = conn.execute(select(refunds.c.parked_at, refunds.c.status).where(
            refunds.c.refund_no == refund_no)).first()
        if r is None or r.status != rs.PROCESSING:
            return
        if park_why and r.parked_at is None:
            values["parked_at"] = now
            raise_alert(conn, now=now, kind="refund_stuck", subject_type="refund", subject_id=refund_no,
                        message=f"refund {refund_no} is not final after every try: {park_why}; still querying",
                        details={"last_error": error[:ERROR_MAX]})
        conn.execute(update(refunds).where(refunds.c.refund_no == refund_no).values(**values))

    p.db.write(tx)


def apply_refund_notification(p: Platform, refund_no: str, result: RefundResult) -> str:
    """A verified refund notification from a channel. Final outcomes are applied like any other
    answer; the channel's own refund number, which notifications may not carry, is then learned by
    one query (best effort: statements show it once known)."""
    if result.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
        return "ignored"
    effect = apply_refund_result(p, refund_no, result, source="notify")
    if effect in ("succeeded", "late_succeeded", "late_to_suspense") and not result.channel_refund_no:
        with p.db.read() as conn:
            r = conn.execute(select(refunds.c.channel, refunds.c.channel_refund_no, refunds.c.payment_no).where(
                refunds.c.refund_no == refund_no)).first()
        if r is not None and r.channel and not r.channel_refund_no:
            answer = p.channel(r.channel).query_refund(refund_no, r.payment_no or "")
            if answer.outcome == Outcome.SUCCEEDED and answer.channel_refund_no:
                p.db.write(lambda conn: conn.execute(update(refunds).where(
                    refunds.c.refund_no == refund_no, refunds.c.channel_refund_no.is_(None)).values(
                    channel_refund_no=answer.channel_refund_no)))
    return effect
