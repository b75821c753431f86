"""More ways to pay: members' bound cards (quick pay), agreements (agreement pay) and merchants'
PayInfo URLs (pull mode).

Card and id numbers are stored only sealed (`kernel.sealing`, purpose `card_no` / `id_number`);
what may be shown is `bank` and `last4`. A card's `channel_card_token` is the channel's own handle.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from piaohao.db.metadata import UTCDateTime, metadata, timestamp_column

member_cards = Table(
    "member_cards", metadata,
    Column("card_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("member_id", String(40), nullable=False),
    Column("channel", String(64), nullable=False),  # the channel account that bound it
    Column("channel_card_token", String(64), nullable=True),
    Column("bank", String(16), nullable=True),
    Column("last4", String(4), nullable=False),
    Column("card_no_sealed", Text, nullable=False),
    Column("id_number_sealed", Text, nullable=False),
    Column("phone_sealed", Text, nullable=False),
    Column("holder_name_sealed", Text, nullable=False),
    Column("status", String(16), nullable=False),  # domain.cards.CARD_STATES
    Column("sms_failures", Integer, nullable=False, server_default="0"),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    Index("ix_member_cards_member", "member_id"),
)

merchant_payinfo = Table(
    "merchant_payinfo", metadata,
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), primary_key=True),
    Column("payinfo_url", Text, nullable=False),
    timestamp_column("updated_at", False),
)

# Agreement pay (代扣): a member's or buyer's signed mandate, and the trades debited under it.
agreements = Table(
    "agreements", metadata,
    Column("agreement_no", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("out_agreement_no", String(64), nullable=False),
    Column("member_id", String(40), nullable=True),
    Column("buyer_id", String(64), nullable=True),
    Column("max_amount_per_debit", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("notify_url", Text, nullable=True),
    Column("channel", String(64), nullable=False),
    Column("sign_url", Text, nullable=True),
    Column("status", String(16), nullable=False),  # domain.agreements.AGREEMENT_STATES
    Column("request_hash", String(64), nullable=False),
    Column("next_query_at", UTCDateTime(), nullable=True),
    timestamp_column("signed_at"),
    timestamp_column("ended_at"),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    UniqueConstraint("merchant_id", "out_agreement_no", name="uq_agreements_merchant_out_agreement_no"),
    Index("ix_agreements_status_next_query_at", "status", "next_query_at"),
)

agreement_debits = Table(
    "agreement_debits", metadata,
    Column("trade_no", String(40), primary_key=True),
    Column("agreement_no", String(40), ForeignKey("agreements.agreement_no"), nullable=False, index=True),
    timestamp_column("created_at", False),
)
