"""The platform's tables (SQLAlchemy Core). Alembic migrations in `piaohao/migrations` create them.

Money columns are BigInteger minor units; every status column is changed only through the state
tables in `piaohao.domain`. Uniqueness that guards money (idempotency keys, one event per fact)
is a database constraint, never a check in Python.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from piaohao.db.metadata import UTCDateTime, metadata, timestamp_column  # noqa: F401  (UTCDateTime: re-exported)

merchants = Table(
    "merchants", metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("coins_cap_pct", Integer, nullable=False, server_default="50"),
    Column("settle_after_days", Integer, nullable=False, server_default="1"),
    timestamp_column("created_at", False),
)

apps = Table(
    "apps", metadata,
    Column("app_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False, index=True),
    # HMAC needs the secret itself, so it cannot be hashed: it is stored sealed (`db.sealed`, opened
    # where auth and the dispatcher load it), never logged or returned after creation.
    Column("secret_sealed", Text, nullable=False),
    Column("previous_secret_sealed", Text, nullable=True),
    timestamp_column("previous_secret_expires_at"),
    Column("status", String(16), nullable=False, server_default="active"),
    timestamp_column("created_at", False),
    timestamp_column("rotated_at"),
)

nonces = Table(
    "nonces", metadata,
    Column("app_id", String(40), primary_key=True),
    Column("nonce", String(64), primary_key=True),
    timestamp_column("created_at", False),
    Index("ix_nonces_created_at", "created_at"),
)

# The shared half of the per-merchant rate limit (`api/ratelimit.py`): one token bucket per merchant,
# which API processes draw leases of tokens from. Integers (milli-tokens, microseconds since the Unix
# epoch) so that one conditional statement can refill and draw on both databases without float drift.
rate_buckets = Table(
    "rate_buckets", metadata,
    Column("merchant_id", String(64), primary_key=True),
    Column("tokens_milli", BigInteger, nullable=False),
    Column("refilled_at_us", BigInteger, nullable=False),
    Column("last_lease", Integer, nullable=False),  # tokens the latest draw granted (read back by it)
)

trades = Table(
    "trades", metadata,
    Column("trade_no", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("return_url", String(1024), nullable=True),
    Column("buyer_id", String(64), nullable=True),
    Column("member_id", String(40), nullable=True),  # set when a member's own methods may pay it
    # "sale": the merchant's own trade (the /v1/trades API). Other purposes ("topup", ...) are
    # internal trades that reuse the cashier and payment pipeline; their out_trade_no carries a
    # ":" that merchant keys cannot, so the two never collide.
    Column("purpose", String(16), nullable=False, server_default="sale"),
    Column("status", String(16), nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("request_hash", String(64), nullable=False),
    Column("cashier_token", String(40), nullable=False, unique=True),
    Column("paid_payment_no", String(40), nullable=True),
    Column("close_reason", String(32), nullable=True),
    # Wrong payment passwords given on this trade's cashier: whoever holds a pay_url may try only a
    # few, fewer than lock the member's password (services/funding.py).
    Column("password_failures", Integer, nullable=False, server_default="0"),
    timestamp_column("expires_at", False),
    timestamp_column("paid_at"),
    timestamp_column("closed_at"),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    UniqueConstraint("merchant_id", "out_trade_no", name="uq_trades_merchant_out_trade_no"),
    Index("ix_trades_status_expires_at", "status", "expires_at"),
    Index("ix_trades_created_at", "created_at", "trade_no"),  # the console's newest-first pages
    Index("ix_trades_paid_at", "paid_at"),  # the console's daily volume chart
)

payments = Table(
    "payments", metadata,
    Column("payment_no", String(40), primary_key=True),
    Column("trade_no", String(40), ForeignKey("trades.trade_no"), nullable=False),
    Column("merchant_id", String(40), nullable=False),
    # One record per attempt: `operation` is "<method>#<attempt>", unique per trade.
    Column("operation", String(64), nullable=False),
    Column("method", String(32), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("channel_txn_no", String(64), nullable=True),
    Column("redirect_url", String(1024), nullable=True),
    Column("next_action", Text, nullable=True),  # what the buyer must do (JSON): QR code, JSAPI, redirect
    Column("query_attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(512), nullable=True),
    timestamp_column("next_query_at"),
    timestamp_column("paid_at"),
    timestamp_column("finished_at"),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    UniqueConstraint("trade_no", "operation", name="uq_payments_trade_operation"),
    Index("ix_payments_status_next_query_at", "status", "next_query_at"),
    Index("ix_payments_trade_no", "trade_no"),
    Index("ix_payments_finished_at", "finished_at"),
)

outbox_events = Table(
    "outbox_events", metadata,
    Column("event_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("type", String(48), nullable=False),
    Column("subject_id", String(40), nullable=False),
    # One event per business fact (e.g. "trade.succeeded:<trade_no>"): a replayed state change
    # cannot enqueue a second notification.
    Column("dedupe_key", String(128), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(512), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    timestamp_column("next_attempt_at", False),
    timestamp_column("lease_until"),
    timestamp_column("created_at", False),
    timestamp_column("delivered_at"),
    timestamp_column("parked_at"),
    Index("ix_outbox_events_status_next_attempt_at", "status", "next_attempt_at"),
)

notification_attempts = Table(
    "notification_attempts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, index=True),
    Column("attempt_no", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(512), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    timestamp_column("started_at", False),
)

alerts = Table(
    "alerts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(48), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject_type", String(32), nullable=True),
    Column("subject_id", String(64), nullable=True),
    Column("message", String(1024), nullable=False),
    Column("details", Text, nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    timestamp_column("created_at", False),
    timestamp_column("resolved_at"),
    # Who raised it (an app, a channel and the caller's address, ...): alerts are rate-limited per
    # source, so a flood from one source cannot bury the others (alerts.py).
    Column("source", String(128), nullable=True),
    # The same fact again (kind, subject, source) while the alert is open only counts it.
    Column("dedupe_key", String(200), nullable=True),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    timestamp_column("last_seen_at"),
    Column("resolved_by", String(64), nullable=True),
    Column("resolution_note", String(1024), nullable=True),
    Index("ix_alerts_status_created_at", "status", "created_at"),
    Index("ix_alerts_dedupe_key_status", "dedupe_key", "status"),
    Index("ix_alerts_source_created_at", "source", "created_at"),
)

# Every operator action (alerts resolve, refunds/payouts retry, payments resolve, keys rotate, ...).
audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    timestamp_column("at", False),
    Column("operator", String(64), nullable=False),
    Column("action", String(48), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("note", String(1024), nullable=True),
    Column("details", Text, nullable=True),
    Index("ix_audit_log_at", "at"),
)

channel_notifications = Table(
    "channel_notifications", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("channel", String(32), nullable=False),
    Column("payment_no", String(40), nullable=True, index=True),
    Column("verified", Boolean, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("body", Text, nullable=False),
    timestamp_column("received_at", False),
)

channel_credentials = Table(
    "channel_credentials", metadata,
    Column("channel", String(32), primary_key=True),
    Column("mch_id", String(64), nullable=False),
    Column("private_key_pem", Text, nullable=False),
    Column("channel_public_key_pem", Text, nullable=True),
    timestamp_column("created_at", False),
)
trade_components = Table(
    "trade_components", metadata,
    # How a trade is funded: one row per method per attempt (a method appears at most once in an
    # attempt; a released attempt stays as history). Refunds draw on the `paid` rows and can never
    # return more to a component than it paid.
    Column("trade_no", String(40), ForeignKey("trades.trade_no"), primary_key=True),
    Column("attempt", String(40), primary_key=True),  # the channel attempt's operation, or "direct"
    Column("method", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # "channel" | "internal"
    Column("amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),  # held | paid | released
    Column("payment_no", String(40), nullable=True),  # the channel payment record, for channel parts
    Column("hold_id", String(40), nullable=True),  # the ledger hold, for internal parts
    Column("member_id", String(40), nullable=True),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
)

