"""Carries every `processing` refund to a final state by talking to its channel.

One try (`execute_refund`) = claim, then talk to the channel outside any transaction, then apply:
- claim: a conditional UPDATE that bumps `attempts` (compare-and-set on its old value) and takes
  a lease (`lease_until`) while pushing `next_attempt_at` out by the growing retry interval; two
  workers, or the API and a worker, can never both hold a refund, so the channel is never asked
  about the same refund by two of us at once;
- if the channel was asked before (`channel_calls` > 0), it is *queried* first: a final answer
  is applied; "processing" or no answer leaves the refund alone until the next try; "no such
  refund" means the earlier call never reached it, so it is asked again, or, once `tries_max`
  calls have been made, the refund is given up (`failed`, money back on the trade, parked);
- otherwise (or after "no such refund") it is asked to refund, idempotently by `refund_no`.
The merchant API makes the first try itself, right after the refund commits (low latency); this
worker is what guarantees progress after a crash or an unknown answer.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import Connection, or_, select, update

from piaohao.channels.spi import Outcome, RefundRequest, RefundResult
from piaohao.db.schema import payments
from piaohao.db.schema_refunds import refunds
from piaohao.domain import refunds as rs
from piaohao.domain.refunds import RefundPolicy
from piaohao.platform import Platform
from piaohao.services import refund_results as svc

log = structlog.get_logger(__name__)
BATCH_SIZE_DEFAULT = 50


def claim(p: Platform, refund_no: str, policy: RefundPolicy, *, force: bool = False) -> dict | None:
    """Take one try of a processing refund, or None if it is final, leased, or (unless `force`)
    not due yet."""
    now = p.clock.now()

    def tx(conn: Connection) -> dict | None:
        r = conn.execute(select(refunds).where(refunds.c.refund_no == refund_no)).mappings().first()
        if r is None or r["status"] != rs.PROCESSING:
            return None
        if r["lease_until"] is not None and r["lease_until"] > now:
            return None
        if not force and (r["next_attempt_at"] is None or r["next_attempt_at"] > now):
            return None
        tries = r["attempts"] + 1
        values = {"attempts": tries, "lease_until": now + timedelta(seconds=policy.lease_s),
                  "next_attempt_at": now + timedelta(seconds=policy.delay_s(tries)), "updated_at": now}
        won = conn.execute(update(refunds).where(
            refunds.c.refund_no == refund_no, refunds.c.status == rs.PROCESSING,
            refunds.c.attempts == r["attempts"],
            or_(refunds.c.lease_until.is_(None), refunds.c.lease_until <= now)).values(**values)).rowcount
        return dict(r, **values) if won == 1 else None

    return p.db.write(tx)


def _release(p: Platform, r: dict) -> None:
    p.db.write(lambda conn: conn.execute(update(refunds).where(
        refunds.c.refund_no == r["refund_no"], refunds.c.attempts == r["attempts"]).values(lease_until=None)))


def execute_refund(p: Platform, refund_no: str, policy: RefundPolicy | None = None, *, force: bool = False) -> str:
    """One try at carrying a refund forward. Returns what happened (for logs and tests)."""
    policy = policy or RefundPolicy.from_settings(p.settings)
    r = claim(p, refund_no, policy, force=force)
    if r is None:
        return "not_claimed"
    try:
        effect = _try(p, r, policy)
    finally:
        _release(p, r)
    log.info("refund.try", refund_no=refund_no, attempt=r["attempts"], effect=effect)
    return effect


def _try(p: Platform, r: dict, policy: RefundPolicy) -> str:
    refund_no = r["refund_no"]
    channel = p.channel(r["channel"])
    if r["channel_calls"] > 0:
        answer = channel.query_refund(refund_no, r["payment_no"] or "")
        if answer.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            return svc.apply_refund_result(p, refund_no, answer, source="query")
        if answer.outcome != Outcome.NOT_FOUND:
            used_up = r["channel_calls"] >= policy.tries_max
            svc.note_inconclusive(p, refund_no, answer.error or f"channel says {answer.outcome}",
                                  park_why=f"the channel still says {answer.outcome}" if used_up else None)
            return "waiting"
        if r["channel_calls"] >= policy.tries_max:
            why = f"the channel has no record of it after {r['channel_calls']} refund requests"
            return svc.apply_refund_result(p, refund_no, RefundResult(Outcome.FAILED, error=why), source="give_up")
    svc.note_channel_call(p, refund_no)
    with p.db.read() as conn:  # some channels (WeChat Pay) want the original payment's amount too
        paid = conn.execute(select(payments.c.amount).where(payments.c.payment_no == r["payment_no"])).scalar()
    answer = channel.refund(RefundRequest(
        payment_no=r["payment_no"], refund_no=refund_no, amount=r["channel_amount"], currency=r["currency"],
        reason=r["reason"], notify_url=p.channel_notify_url(r["channel"]), payment_amount=paid))
    if answer.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        return svc.apply_refund_result(p, refund_no, answer, source="refund")
    svc.note_inconclusive(p, refund_no, answer.error or f"channel says {answer.outcome}")
    return "unknown"


