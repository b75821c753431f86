"""Refund tables, on the shared metadata (migration 0005).

`refunds` is one row per refund, the merchant's (`kind` "merchant") or the platform's own refund of
a stray payment (`kind` "stray"). Idempotency is the unique (trade_no, out_request_no) constraint;
stray refunds use the key `stray:<payment_no>`, which a merchant key (no ":") can never be.
`refund_components` says what one refund returns to each funding component of its trade.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, UniqueConstraint

from piaohao.db.metadata import UTCDateTime, metadata


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


refunds = Table(
    "refunds", metadata,
    Column("refund_no", String(40), primary_key=True),
    Column("trade_no", String(40), ForeignKey("trades.trade_no"), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("out_request_no", String(80), nullable=False),
    Column("kind", String(16), nullable=False),  # merchant | stray
    Column("amount", BigInteger, nullable=False),
    # The part that goes back through the channel (0: internal components only).
    Column("channel_amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # processing | succeeded | failed
    Column("reason", String(256), nullable=True),
    Column("payment_no", String(40), nullable=True),  # the channel payment refunded
    Column("channel", String(32), nullable=True),
    Column("channel_refund_no", String(64), nullable=True),
    # The ledger hold that reserves the merchant's money while the channel pays out.
    Column("hold_id", String(40), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),  # times a worker took it up
    Column("channel_calls", Integer, nullable=False, server_default="0"),  # refund requests sent
    Column("last_error", String(512), nullable=True),
    _ts("next_attempt_at"),
    _ts("lease_until"),
    _ts("parked_at"),  # handed to an operator (alert raised); may still settle by itself
    _ts("finished_at"),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("trade_no", "out_request_no", name="uq_refunds_trade_no_out_request_no"),
    Index("ix_refunds_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_refunds_merchant_id_finished_at", "merchant_id", "finished_at"),
)

refund_components = Table(
    "refund_components", metadata,
    Column("refund_no", String(40), ForeignKey("refunds.refund_no"), primary_key=True),
    Column("attempt", String(40), primary_key=True),  # the trade component's attempt
    Column("method", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # channel | internal
    Column("amount", BigInteger, nullable=False),
    Column("member_id", String(40), nullable=True),
    _ts("created_at", False),
)
