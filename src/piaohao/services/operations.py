"""Operator use cases: the manual-handling queue (API.md "Operations").

One function per action, shared by the command line (`cli/ops.py`) and, later, the console. Each
action that changes something writes one audit record (`audit_log`) naming the operator, the
action, the object and the note; an action refused by the object's state writes nothing.

- `resolve_alert`: closes an open alert.
- `retry_refund`, `retry_payout`: a parked record (the machines gave up asking) is made due again
  with a fresh round of tries; the running workers carry it on.
- `resolve_payment`: the outcome of a payment the channel never gave, after an operator checked it
  at the channel; applied through `services.payments.apply_channel_result`, the same path as a
  channel answer (ledger, trade, notifications, strays all follow from it).
"""

from __future__ import annotations

import getpass
import os
from datetime import datetime

import orjson
from sqlalchemy import Connection, insert, select, update

from piaohao.alerts import OPEN, RESOLVED, alert_view
from piaohao.alerts import list_alerts as _list_alerts
from piaohao.channels.spi import Outcome, PaymentResult
from piaohao.db.schema import alerts, audit_log, payments
from piaohao.db.schema_members import disbursements
from piaohao.db.schema_refunds import refunds
from piaohao.domain import payments as pay_states
from piaohao.domain import refunds as refund_states
from piaohao.domain.business import PROCESSING
from piaohao.kernel.errors import (
    AlertNotFound,
    InvalidRequest,
    OperationNotAllowed,
    PaymentNotFound,
    PayoutNotFound,
    RefundNotFound,
)
from piaohao.ledger.check import check as ledger_check
from piaohao.platform import Platform
from piaohao.services import notifications
from piaohao.services.payments import apply_channel_result

__all__ = ["audit", "check_ledger", "default_operator", "list_alerts", "list_audit", "resend_notification",
           "resolve_alert", "resolve_payment", "retry_payout", "retry_refund"]

NOTE_CHARS_MAX = 1024
OPERATOR_CHARS_MAX = 64
AUDIT_LIMIT_MAX = 1000


def default_operator() -> str:
    """The operator when none is named: the OS user running the command."""
    try:
        return getpass.getuser()[:OPERATOR_CHARS_MAX] or "unknown"
    except Exception:  # noqa: BLE001 - no user database (containers): fall back
        return os.environ.get("USER", "unknown")[:OPERATOR_CHARS_MAX]


def _check_note(note: str) -> str:
    if not isinstance(note, str) or not note.strip() or len(note) > NOTE_CHARS_MAX or "\x00" in note:
        raise InvalidRequest(f"--note must be 1-{NOTE_CHARS_MAX} characters")
    return note.strip()


def _check_operator(operator: str | None) -> str:
    operator = (operator or default_operator()).strip()
    if not operator or len(operator) > OPERATOR_CHARS_MAX or "\x00" in operator:
        raise InvalidRequest(f"--operator must be 1-{OPERATOR_CHARS_MAX} characters")
    return operator


def audit(conn: Connection, *, now: datetime, operator: str, action: str, object_type: str, object_id: str,
          note: str | None, details: dict | None = None) -> None:
    """One audit record, in the caller's transaction."""
    conn.execute(insert(audit_log).values(
        at=now, operator=operator[:OPERATOR_CHARS_MAX], action=action, object_type=object_type,
        object_id=object_id[:64], note=(note or "")[:NOTE_CHARS_MAX] or None,
        details=orjson.dumps(details or {}).decode()))


def list_audit(p: Platform, *, limit: int = 200, object_id: str | None = None) -> list[dict]:
    """Newest first: each {"at", "operator", "action", "object_type", "object_id", "note"}."""
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(1, min(int(limit), AUDIT_LIMIT_MAX)))
    if object_id:
        q = q.where(audit_log.c.object_id == object_id)
    with p.db.read() as conn:
        rows = conn.execute(q).mappings().all()
    return [{"at": r["at"], "operator": r["operator"], "action": r["action"], "object_type": r["object_type"],
             "object_id": r["object_id"], "note": r["note"], "details": orjson.loads(r["details"] or "{}")}
            for r in rows]


def list_alerts(p: Platform, *, include_resolved: bool = False, severity: str | None = None, kind: str | None = None,
                limit: int = 200, before_id: int | None = None) -> list[dict]:
    return _list_alerts(p.db, status=None if include_resolved else OPEN, severity=severity, kind=kind, limit=limit,
                        before_id=before_id)


def resolve_alert(p: Platform, alert_id: str, *, note: str, operator: str | None = None) -> dict:
    note, operator = _check_note(note), _check_operator(operator)
    try:
        number = int(str(alert_id).strip())
    except ValueError:
        raise AlertNotFound(f"no alert {alert_id!r}") from None
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        row = conn.execute(select(alerts).where(alerts.c.id == number).with_for_update()).mappings().first()
        if row is None:
            raise AlertNotFound(f"no alert {alert_id!r}")
        if row["status"] != OPEN:
            raise OperationNotAllowed(f"alert {alert_id} is already {row['status']}")
        conn.execute(update(alerts).where(alerts.c.id == number, alerts.c.status == OPEN).values(
            status=RESOLVED, resolved_at=now, resolved_by=operator, resolution_note=note))
        audit(conn, now=now, operator=operator, action="alert.resolve", object_type="alert", object_id=str(number),
              note=note, details={"kind": row["kind"], "subject_id": row["subject_id"]})
        return alert_view(conn.execute(select(alerts).where(alerts.c.id == number)).mappings().one())

    return p.db.write(tx)


def retry_refund(p: Platform, refund_no: str, *, note: str | None = None, operator: str | None = None) -> dict:
    """A parked refund (still processing, the channel never gave a final answer) is asked again:
    due now, with a fresh round of tries (the channel is queried first: it was asked before)."""
    operator = _check_operator(operator)
    now = p.clock.now()

    def tx(conn: Connection) -> dict:
        r = conn.execute(select(refunds).where(refunds.c.refund_no == refund_no).with_for_update()).mappings().first()
        if r is None:
            raise RefundNotFound(f"no refund {refund_no!r}")
        if r["status"] != refund_states.PROCESSING or r["parked_at"] is None:
            raise OperationNotAllowed(f"refund {refund_no} is {r['status']}"
                                      f"{'' if r['parked_at'] else ' and not parked'}: nothing to retry")
        conn.execute(update(refunds).where(refunds.c.refund_no == refund_no,
                                           refunds.c.status == refund_states.PROCESSING).values(
            parked_at=None, next_attempt_at=now, lease_until=None,
            channel_calls=min(r["channel_calls"], 1), updated_at=now))
        audit(conn, now=now, operator=operator, action="refund.retry", object_type="refund", object_id=refund_no,
              note=note, details={"last_error": r["last_error"], "channel_calls": r["channel_calls"]})
        return {"refund_no": refund_no, "status": r["status"], "next_attempt_at": now}

    return p.db.write(tx)


def retry_payout(p: Platform, payout_no: str, *, note: str | None = None, operator: str | None = None) -> dict:
    """A parked withdrawal or payout (processing, outcome unknown after every try) is carried on:
    due now, with a fresh round of tries. Its first call queries the channel (it was sent before;
    a channel that never heard of it is sent it again, idempotently on the same number)."""
    operator = _check_operator(operator)
    now = p.clock.now()
    _d = disbursements.c

    def tx(conn: Connection) -> dict:
        d = conn.execute(select(disbursements).where(_d.disbursement_no == payout_no).with_for_update()
                         ).mappings().first()
        if d is None:
            raise PayoutNotFound(f"no payout or withdrawal {payout_no!r}")
        if d["status"] != PROCESSING or d["parked_at"] is None:
            raise OperationNotAllowed(f"{d['kind']} {payout_no} is {d['status']}"
                                      f"{'' if d['parked_at'] else ' and not parked'}: nothing to retry")
        # attempts = 1: "sent once": the executor queries first, and counts a fresh round from here.
        conn.execute(update(disbursements).where(_d.disbursement_no == payout_no, _d.status == PROCESSING).values(
            parked_at=None, next_attempt_at=now, attempts=1, updated_at=now))
        audit(conn, now=now, operator=operator, action=f"{d['kind']}.retry", object_type=d["kind"],
              object_id=payout_no, note=note, details={"last_error": d["last_error"], "attempts": d["attempts"]})
        return {"payout_no": payout_no, "kind": d["kind"], "status": d["status"], "next_attempt_at": now}

    return p.db.write(tx)


PAYMENT_RESOLUTIONS = {"succeeded": Outcome.SUCCEEDED, "failed": Outcome.FAILED}


def resolve_payment(p: Platform, payment_no: str, *, status: str, channel_txn_no: str | None, note: str,
                    operator: str | None = None) -> dict:
    """Settle an open payment by hand, as the channel would have: through `apply_channel_result`."""
    note, operator = _check_note(note), _check_operator(operator)
    if status not in PAYMENT_RESOLUTIONS:
        raise InvalidRequest("--status must be succeeded or failed")
    if status == "succeeded" and not (channel_txn_no or "").strip():
        raise InvalidRequest("--channel-txn-no is required for a succeeded payment (the channel's number)")
    if channel_txn_no is not None and (len(channel_txn_no) > 64 or "\x00" in channel_txn_no):
        raise InvalidRequest("--channel-txn-no must be at most 64 characters")
    with p.db.read() as conn:
        pay = conn.execute(select(payments).where(payments.c.payment_no == payment_no)).mappings().first()
    if pay is None:
        raise PaymentNotFound(f"no payment {payment_no!r}")
    if pay["status"] not in pay_states.OPEN_STATES:
        raise OperationNotAllowed(f"payment {payment_no} is already {pay['status']}")
    now = p.clock.now()
    result = PaymentResult(outcome=PAYMENT_RESOLUTIONS[status], channel_txn_no=channel_txn_no or None,
                           amount=pay["amount"], currency=pay["currency"], paid_at=now,
                           error=f"resolved by {operator}: {note}" if status == "failed" else None)
    effect = apply_channel_result(p, payment_no, result, source="operator")

    def record(conn: Connection) -> None:
        audit(conn, now=now, operator=operator, action="payment.resolve", object_type="payment",
              object_id=payment_no, note=note,
              details={"status": status, "channel_txn_no": channel_txn_no, "effect": effect,
                       "trade_no": pay["trade_no"]})

    p.db.write(record)
    with p.db.read() as conn:
        after = conn.execute(select(payments.c.status, payments.c.trade_no).where(
            payments.c.payment_no == payment_no)).one()
    return {"payment_no": payment_no, "trade_no": after.trade_no, "status": after.status, "effect": effect}


def resend_notification(p: Platform, event_id: str, *, operator: str | None = None) -> dict:
    """`notifications resend`, with its audit record."""
    operator = _check_operator(operator)
    row = notifications.resend(p.db, event_id, p.clock.now())
    p.db.write(lambda conn: audit(conn, now=p.clock.now(), operator=operator, action="notification.resend",
                                  object_type="event", object_id=event_id, note=None))
    return row


def check_ledger(p: Platform, *, operator: str | None = None) -> dict:
    """`ledger check` run by an operator (the console): {"ok", "violations"}, with an audit record."""
    operator = _check_operator(operator)
    violations = [v.as_dict() for v in ledger_check(p.db)]
    p.db.write(lambda conn: audit(conn, now=p.clock.now(), operator=operator, action="ledger.check",
                                  object_type="ledger", object_id="ledger", note=None,
                                  details={"ok": not violations, "violations": len(violations)}))
    return {"ok": not violations, "violations": violations}
