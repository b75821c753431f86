"""Channel accounts: a merchant's (or the platform's) credentials at one payment channel.

`config_public` holds what may be shown (app ids, gateway URLs, public keys, serials) as JSON;
`config_sealed` holds the secrets (private keys, the APIv3 key) sealed by `kernel.sealing`, never in
clear. A payment records the account that carried it (`payments.channel` is the account's key),
so a disabled account still answers queries and refunds of the money it took.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from piaohao.db.metadata import metadata, timestamp_column

channel_accounts = Table(
    "channel_accounts", metadata,
    Column("channel_account_id", String(40), primary_key=True),
    Column("kind", String(32), nullable=False),  # sandbox | alipay | wechatpay
    Column("merchant_id", String(40), nullable=True),  # NULL: the platform's own (the sandbox)
    Column("display_id", String(64), nullable=False),  # the app id / mch id an operator recognises
    Column("status", String(16), nullable=False),  # active | disabled
    Column("config_public", Text, nullable=False),
    Column("config_sealed", Text, nullable=False),
    timestamp_column("created_at", False),
    timestamp_column("updated_at", False),
    Index("ix_channel_accounts_merchant_kind", "merchant_id", "kind"),
)
