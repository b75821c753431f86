"""Notifications that channels send us: verify, record, apply, acknowledge."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy import insert, select

from piaohao.alerts import WARNING, raise_alert
from piaohao.channels.spi import (
    NotificationAck,
    NotificationRejected,
    Outcome,
    PaymentResult,
    PayoutResult,
    RefundResult,
)
from piaohao.db.schema import channel_notifications, payments
from piaohao.db.schema_members import disbursements
from piaohao.db.schema_refunds import refunds
from piaohao.platform import Platform
from piaohao.services.payments import WRONG_ACCOUNT, apply_channel_result, schedule_query_now
from piaohao.services.payouts import apply_payout_result
from piaohao.services.refund_results import apply_refund_notification

log = structlog.get_logger(__name__)
INBOUND = Counter("piaohao_channel_notifications_total", "Channel notifications, by channel and outcome",
                  ["channel", "outcome"])
BODY_LOGGED_MAX = 4000
REJECTED_BODY_LOGGED_MAX = 1024  # anyone can send those: keep less of them
FINAL = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CLOSED)


def _carrier_of(p: Platform, note) -> str | None:
    """The channel key of the record a notification is about (None: we have no such record)."""
    with p.db.read() as conn:
        if note.kind == "payment" and note.payment_no:
            return conn.execute(select(payments.c.channel).where(payments.c.payment_no == note.payment_no)).scalar()
        if note.kind == "refund" and note.refund_no:
            return conn.execute(select(refunds.c.channel).where(refunds.c.refund_no == note.refund_no)).scalar()
    return None


def handle_channel_notification(p: Platform, channel_name: str, headers: dict[str, str],
                                body: bytes, *, client: str | None = None) -> NotificationAck:
    """`client`: the sender's address. Refused notifications are anyone's: their alerts are
    rate-limited per (channel, address), and past that they are counted, not stored."""
    channel = p.channel(channel_name)
    now = p.clock.now()
    try:
        note = channel.verify_notification(headers, body)
    except NotificationRejected as exc:
        rejected = exc

        def record_rejection(conn):
            raised = raise_alert(conn, now=now, kind="notification_rejected", severity=WARNING,
                                 subject_type="payment", subject_id=rejected.claimed_payment_no,
                                 source=f"notify:{channel_name}:{client or '?'}",
                                 message=f"{channel_name} notification refused: {rejected.reason}"[:512])
            if raised == "flood":
                return  # counted on the source's flood alert; its bodies are not stored
            conn.execute(insert(channel_notifications).values(
                channel=channel_name, payment_no=(rejected.claimed_payment_no or "")[:40] or None, verified=False,
                outcome="rejected", body=body[:REJECTED_BODY_LOGGED_MAX].decode("utf-8", "replace"),
                received_at=now))
        p.db.write(record_rejection)
        if rejected.claimed_payment_no:
            schedule_query_now(p, rejected.claimed_payment_no)  # learn the truth from the channel itself
        INBOUND.labels(channel_name, "rejected").inc()
        return channel.ack(False)

    if note.kind == "payment" and note.payment_no and note.amount is not None and note.outcome in FINAL:
        return _payment_notification(p, channel, channel_name, note, body, now)
    effect = "ignored"
    carrier = _carrier_of(p, note)
    if carrier is not None and carrier != channel_name:
        # Signed by one account's channel but about a record another account carried: never apply it.
        p.db.write(lambda conn: raise_alert(
            conn, now=now, kind="notification_wrong_account", subject_type=note.kind,
            subject_id=note.payment_no or note.refund_no,
            message=f"a verified notification at {channel_name} names a record carried by {carrier}: ignored"))
        INBOUND.labels(channel_name, "wrong_account").inc()
        return channel.ack(False)
    if note.kind == "payment" and note.payment_no and note.amount is None:
        schedule_query_now(p, note.payment_no)  # a payment notification must state its amount: ask instead
    elif note.kind == "payment":
        pass  # not final yet (final ones went to `_payment_notification`): nothing to apply
    elif note.kind == "payout" and note.payout_no:
        effect = _payout_notification(p, channel_name, note)
    elif note.kind == "refund" and note.refund_no:
        effect = apply_refund_notification(p, note.refund_no, RefundResult(
            outcome=note.outcome, amount=note.amount, finished_at=note.finished_at))
    p.db.write(lambda conn: _record(conn, channel_name, note, body, effect, now))
    INBOUND.labels(channel_name, effect).inc()
    # Acknowledged even when it changed nothing (duplicate, mismatch): a tampered notification has
    # raised its alert, and the channel must stop retrying it.
    return channel.ack(True)


_INSERT_NOTIFICATION = channel_notifications.insert()


def _record(conn, channel_name: str, note, body: bytes, effect: str, now) -> None:
    conn.execute(_INSERT_NOTIFICATION, dict(  # the row as parameters of a statement built once
        channel=channel_name, payment_no=note.payment_no, verified=True, outcome=effect[:32],
        body=body[:BODY_LOGGED_MAX].decode("utf-8", "replace"), received_at=now))


def _payment_notification(p: Platform, channel, channel_name: str, note, body: bytes, now) -> NotificationAck:
    """A verified payment's final outcome, the usual notification: the account check, the
    answer's effect and the notification's record in one transaction (no read before it)."""
    result = PaymentResult(outcome=note.outcome, channel_txn_no=note.channel_txn_no, amount=note.amount,
                           currency=note.currency, paid_at=note.finished_at)

    def record(conn, effect: str) -> None:
        if effect != WRONG_ACCOUNT:  # a notification about another account's payment is not ours to keep
            _record(conn, channel_name, note, body, effect, now)

    effect = apply_channel_result(p, note.payment_no, result, source="notify", carrier=channel_name, also=record)
    INBOUND.labels(channel_name, effect).inc()
    # Acknowledged even when it changed nothing (duplicate, mismatch): a tampered notification has
    # raised its alert, and the channel must stop retrying it.
    return channel.ack(effect != WRONG_ACCOUNT)


def _payout_notification(p: Platform, channel_name: str, note) -> str:
    """A signed notification about a withdrawal or payout: applied like the executor's answer; one
    about a payout we never made is money leaving we cannot account for: a critical alert."""
    with p.db.read() as conn:
        known = conn.execute(select(disbursements.c.channel).where(
            disbursements.c.disbursement_no == note.payout_no)).scalar()
    if known is None:
        p.db.write(lambda conn: raise_alert(
            conn, now=p.clock.now(), kind="unknown_payout", subject_type="payout", subject_id=note.payout_no,
            message=f"{channel_name} notified {note.outcome} of {note.amount} {note.currency} for a payout "
                    "we do not know", details={"channel": channel_name}))
        return "unknown_payout"
    if note.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
        return "ignored"
    return apply_payout_result(p, note.payout_no, PayoutResult(note.outcome, channel_payout_no=note.channel_txn_no,
                                                               error=None))
