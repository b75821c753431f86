"""More ways to pay: members' bound cards (quick pay) and merchants' PayInfo URLs (pull mode).

Card and id numbers are stored only sealed (`kernel.sealing`, purpose `card_no` / `id_number`);
what may be shown is `bank` and `last4`. A card's `channel_card_token` is the channel's own handle.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from piaohao.db.metadata import metadata, timestamp_column

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
