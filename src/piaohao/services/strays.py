"""Money that arrived without a payable trade (paid after close or expiry, or a second payment
for a paid trade). It sits in the platform's suspense account and must go back to the buyer.

`on_stray_payment` runs inside the transaction that recorded the payment (the caller raises the
alert). It opens a refund of the whole payment back through its channel, funded by suspense:
the refund worker carries it to a final state like any refund, and on success the money leaves
suspense for the channel's clearing account. It is never counted against the merchant's trade
(`trades.refunded_amount` is untouched) and never shown to the merchant (API, statements).
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import Connection, insert

from piaohao.db.inserts import insert_if_absent
from piaohao.db.schema_refunds import refund_components, refunds
from piaohao.domain import refunds as rs
from piaohao.kernel.ids import new_id
from piaohao.platform import Platform

log = structlog.get_logger(__name__)


def on_stray_payment(conn: Connection, p: Platform, trade, pay, now: datetime) -> None:
    create_stray_refund(conn, p, trade, pay, now)


def create_stray_refund(conn: Connection, p: Platform, trade, pay, now: datetime) -> str | None:
    """Inside the transaction that recorded a payment no trade could take: a refund of all of it,
    back through its channel, funded by the platform's suspense account (where the payment went).
    One per payment (its key is `stray:<payment_no>`); returns the new refund_no, or None."""
    refund_no = new_id("rf")
    inserted = insert_if_absent(conn, refunds, dict(
        refund_no=refund_no, trade_no=trade["trade_no"], merchant_id=trade["merchant_id"], app_id=trade["app_id"],
        out_request_no=f"stray:{pay['payment_no']}", kind=rs.KIND_STRAY, amount=pay["amount"],
        channel_amount=pay["amount"], currency=pay["currency"], status=rs.PROCESSING,
        reason="paid without a payable trade: returned to the buyer", payment_no=pay["payment_no"],
        channel=pay["channel"], attempts=0, channel_calls=0, next_attempt_at=now, created_at=now, updated_at=now,
    ), ["trade_no", "out_request_no"])
    if not inserted:
        return None
    conn.execute(insert(refund_components).values(
        refund_no=refund_no, attempt=pay["operation"], method=pay["method"], kind="channel", amount=pay["amount"],
        member_id=None, created_at=now))
    log.info("refund.stray_created", refund_no=refund_no, payment_no=pay["payment_no"], amount=pay["amount"])
    return refund_no
