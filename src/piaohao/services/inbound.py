"""Notifications that channels send us: verify, record, apply, acknowledge."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy import insert, select

from piaohao.alerts import WARNING, raise_alert
from piaohao.channels.spi import NotificationAck, NotificationRejected, Outcome, PaymentResult, RefundResult
from piaohao.db.schema import channel_notifications, payments
from piaohao.db.schema_refunds import refunds
from piaohao.platform import Platform
from piaohao.services.payments import apply_channel_result, schedule_query_now
from piaohao.services.refund_results import apply_refund_notification

log = structlog.get_logger(__name__)
INBOUND = Counter("piaohao_channel_notifications_total", "Channel notifications, by channel and outcome",
                  ["channel", "outcome"])
BODY_LOGGED_MAX = 4000


def _carrier_of(p: Platform, note) -> str | None:
    """The channel key of the record a notification is about (None: we have no such record)."""
    with p.db.read() as conn:
        if note.kind == "payment" and note.payment_no:
            return conn.execute(select(payments.c.channel).where(payments.c.payment_no == note.payment_no)).scalar()
        if note.kind == "refund" and note.refund_no:
            return conn.execute(select(refunds.c.channel).where(refunds.c.refund_no == note.refund_no)).scalar()
    return None


def handle_channel_notification(p: Platform, channel_name: str, headers: dict[str, str],
                                body: bytes) -> NotificationAck:
    channel = p.channel(channel_name)
    now = p.clock.now()
    try:
        note = channel.verify_notification(headers, body)
    except NotificationRejected as exc:
        rejected = exc

        def record_rejection(conn):
            conn.execute(insert(channel_notifications).values(
                channel=channel_name, payment_no=(rejected.claimed_payment_no or "")[:40] or None, verified=False,
                outcome="rejected", body=body[:BODY_LOGGED_MAX].decode("utf-8", "replace"), received_at=now))
            raise_alert(conn, now=now, kind="notification_rejected", severity=WARNING, subject_type="payment",
                        subject_id=rejected.claimed_payment_no,
                        message=f"{channel_name} notification refused: {rejected.reason}")
        p.db.write(record_rejection)
        if rejected.claimed_payment_no:
            schedule_query_now(p, rejected.claimed_payment_no)  # learn the truth from the channel itself
        INBOUND.labels(channel_name, "rejected").inc()
        return channel.ack(False)

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
    elif note.kind == "payment" and note.payment_no:
        result = PaymentResult(outcome=note.outcome, channel_txn_no=note.channel_txn_no, amount=note.amount,
                               currency=note.currency, paid_at=note.finished_at)
        if note.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CLOSED):
            effect = apply_channel_result(p, note.payment_no, result, source="notify")
    elif note.kind == "refund" and note.refund_no:
        effect = apply_refund_notification(p, note.refund_no, RefundResult(
            outcome=note.outcome, amount=note.amount, finished_at=note.finished_at))
    p.db.write(lambda conn: conn.execute(insert(channel_notifications).values(
        channel=channel_name, payment_no=note.payment_no, verified=True, outcome=effect[:32],
        body=body[:BODY_LOGGED_MAX].decode("utf-8", "replace"), received_at=now)))
    INBOUND.labels(channel_name, effect).inc()
    # Acknowledged even when it changed nothing (duplicate, mismatch): a tampered notification has
    # raised its alert, and the channel must stop retrying it.
    return channel.ack(True)
