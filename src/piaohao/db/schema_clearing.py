"""Clearing and settlement tables (capabilities 6-7): sub-merchants, split receivers, trade
orders and their splits, fee rules, settlement batches and their details.

Every "exactly once" here is a database constraint: one sub-merchant per (merchant,
out_sub_merchant_id), one receiver per (merchant, out_receiver_id), one settlement detail per
order (its primary key), one settle request per (merchant, out_request_no). Counters that guard
limits (receivers per merchant, subsidies per business day) are single rows changed by
conditional UPDATEs, so they hold under concurrency. docs/settlement.md has the model.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from piaohao.db.metadata import metadata, timestamp_column

sub_merchants = Table(
    "sub_merchants", metadata,
    Column("sub_merchant_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("out_sub_merchant_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kyc_type", String(16), nullable=False),  # individual | enterprise
    Column("legal_name", String(128), nullable=False),
    # Identity and bank numbers: sealed (`db.sealed`); the masked copy is what views show.
    Column("id_number_sealed", Text, nullable=False),
    Column("id_number_masked", String(64), nullable=False),
    Column("bank", String(64), nullable=False),
    Column("account_number_sealed", Text, nullable=False),
    Column("account_number_masked", String(34), nullable=False),
    Column("account_name", String(128), nullable=False),
    Column("settle_after_days", Integer, nullable=False),
    Column("payout_every_days", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("request_hash", String(64), nullable=False),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    UniqueConstraint("merchant_id", "out_sub_merchant_id", name="uq_sub_merchants_merchant_out_id"),
    CheckConstraint("settle_after_days >= 0 AND settle_after_days <= 365", name="ck_sub_merchants_settle_days"),
    CheckConstraint("status IN ('pending_review', 'active', 'frozen', 'closed')", name="ck_sub_merchants_status"),
)

split_receivers = Table(
    "split_receivers", metadata,
    Column("receiver_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("out_receiver_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("bank", String(64), nullable=False),
    Column("account_number_sealed", Text, nullable=False),  # `db.sealed`
    Column("account_number_masked", String(34), nullable=False),
    Column("account_name", String(128), nullable=False),
    Column("request_hash", String(64), nullable=False),
    timestamp_column("created_at", False),
    UniqueConstraint("merchant_id", "out_receiver_id", name="uq_split_receivers_merchant_out_id"),
)

# One row per merchant: `receivers` grows by a conditional UPDATE (receivers < max), in the
# transaction that inserts the receiver, so the limit holds whatever the concurrency.
receiver_counters = Table(
    "receiver_counters", metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("receivers", Integer, nullable=False),
    CheckConstraint("receivers >= 0", name="ck_receiver_counters_receivers"),
)

# Subsidies counted per merchant per business day (PIAOHAO_MARKETING_DAILY_CAP): conditional UPDATE.
marketing_usage = Table(
    "marketing_usage", metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("business_date", String(10), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("used", BigInteger, nullable=False),
    CheckConstraint("used >= 0", name="ck_marketing_usage_used"),
)

# A trade's orders (合併支付). kind "order": a seller's order named by the merchant; kind "own":
# the one implicit row of a trade without orders (the merchant's own sale, out_order_no ":own").
trade_orders = Table(
    "trade_orders", metadata,
    Column("trade_no", String(40), ForeignKey("trades.trade_no"), primary_key=True),
    Column("out_order_no", String(64), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("kind", String(8), nullable=False),  # order | own
    Column("seller_type", String(16), nullable=False),  # sub_merchant | merchant
    Column("seller_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("subsidy_amount", BigInteger, nullable=False, server_default="0"),
    Column("split_amount", BigInteger, nullable=False, server_default="0"),
    Column("subsidy_date", String(10), nullable=True),  # the business day the subsidy was counted on
    Column("position", Integer, nullable=False, server_default="0"),
    Column("status", String(24), nullable=False),  # created | pending_settlement | settled | closed
    timestamp_column("paid_at"),
    timestamp_column("settle_due_at"),
    timestamp_column("settled_at"),
    Column("batch_no", String(40), nullable=True),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    Index("ix_trade_orders_status_settle_due_at", "status", "settle_due_at"),
    Index("ix_trade_orders_seller_id", "seller_id"),
    CheckConstraint("amount > 0", name="ck_trade_orders_amount"),
    CheckConstraint("subsidy_amount >= 0", name="ck_trade_orders_subsidy"),
    CheckConstraint("split_amount >= 0 AND split_amount <= amount", name="ck_trade_orders_split"),
    CheckConstraint("status IN ('created', 'pending_settlement', 'settled', 'closed')", name="ck_trade_orders_status"),
)

order_splits = Table(
    "order_splits", metadata,
    Column("trade_no", String(40), primary_key=True),
    Column("out_order_no", String(64), primary_key=True),
    Column("receiver_id", String(40), primary_key=True),  # a split receiver, or "platform" (the merchant)
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="ck_order_splits_amount"),
)

# Which order a refund of a trade with orders (or of an own sale) was taken from.
order_refunds = Table(
    "order_refunds", metadata,
    Column("refund_no", String(40), primary_key=True),
    Column("trade_no", String(40), nullable=False),
    Column("out_order_no", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("phase", String(16), nullable=False),  # before | after (settlement), when first taken
    timestamp_column("created_at", False),
    Index("ix_order_refunds_trade_no_out_order_no", "trade_no", "out_order_no"),
    CheckConstraint("amount > 0", name="ck_order_refunds_amount"),
)

# Fee rules (計費): the lowest `priority` among the matching active rules wins; a NULL
# criterion matches anything. A record that matches no rule is an error, never a zero fee.
fee_rules = Table(
    "fee_rules", metadata,
    Column("rule_id", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=True),
    Column("method", String(32), nullable=True),
    Column("business_type", String(16), nullable=True),  # order | own
    Column("currency", String(3), nullable=True),
    Column("priority", Integer, nullable=False),
    Column("rate_bp", String(24), nullable=False),  # a Decimal, in basis points, kept as text
    Column("fixed_amount", BigInteger, nullable=False, server_default="0"),
    Column("min_fee", BigInteger, nullable=False, server_default="0"),
    Column("max_fee", BigInteger, nullable=True),
    Column("rounding", String(16), nullable=False),  # half_up | floor | ceil
    Column("bearer", String(16), nullable=False),  # seller | platform
    Column("active", Boolean, nullable=False, server_default="1"),
    timestamp_column("created_at", False),
    CheckConstraint("rounding IN ('half_up', 'floor', 'ceil')", name="ck_fee_rules_rounding"),
    CheckConstraint("bearer IN ('seller', 'platform')", name="ck_fee_rules_bearer"),
    CheckConstraint("fixed_amount >= 0 AND min_fee >= 0", name="ck_fee_rules_amounts"),
)

settlement_batches = Table(
    "settlement_batches", metadata,
    Column("batch_no", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("seller_type", String(16), nullable=False),
    Column("seller_id", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("trigger", String(16), nullable=False),  # confirm | auto
    Column("order_count", Integer, nullable=False),
    Column("gross_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("subsidy_amount", BigInteger, nullable=False),
    Column("split_amount", BigInteger, nullable=False),
    Column("fee_amount", BigInteger, nullable=False),
    Column("platform_fee_amount", BigInteger, nullable=False),
    Column("seller_amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # settled (a batch is written only once verified)
    timestamp_column("created_at", False),
    Index("ix_settlement_batches_merchant_id_seller_id", "merchant_id", "seller_id"),
)

settlement_details = Table(
    "settlement_details", metadata,
    # The primary key is the order: an order can be settled exactly once.
    Column("trade_no", String(40), primary_key=True),
    Column("out_order_no", String(64), primary_key=True),
    Column("batch_no", String(40), ForeignKey("settlement_batches.batch_no"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("subsidy_amount", BigInteger, nullable=False),
    Column("split_amount", BigInteger, nullable=False),  # what the receivers got
    Column("fee_amount", BigInteger, nullable=False),  # charged to the seller
    Column("platform_fee_amount", BigInteger, nullable=False),  # borne by the platform (memo)
    Column("fee_rule_id", String(40), nullable=False),
    Column("seller_amount", BigInteger, nullable=False),
    timestamp_column("created_at", False),
    Index("ix_settlement_details_batch_no", "batch_no"),
    CheckConstraint("seller_amount >= 0 AND split_amount >= 0 AND fee_amount >= 0", name="ck_settlement_details_parts"),
)

settlement_split_details = Table(
    "settlement_split_details", metadata,
    Column("trade_no", String(40), primary_key=True),
    Column("out_order_no", String(64), primary_key=True),
    Column("receiver_id", String(40), primary_key=True),
    Column("batch_no", String(40), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Index("ix_settlement_split_details_batch_no", "batch_no"),
    CheckConstraint("amount >= 0", name="ck_settlement_split_details_amount"),
)

settle_requests = Table(
    "settle_requests", metadata,
    Column("merchant_id", String(40), primary_key=True),
    Column("out_request_no", String(64), primary_key=True),
    Column("trade_no", String(40), nullable=False),
    Column("request_hash", String(64), nullable=False),
    timestamp_column("created_at", False),
)
