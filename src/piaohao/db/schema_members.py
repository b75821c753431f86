"""Tables of members and the member/merchant business types (top-up, transfer, withdrawal, payout).

On the platform's shared `metadata` (migration 0004 creates them). Money is BigInteger minor
units; every merchant key (`out_member_id`, `out_request_no`) is unique per merchant by a
database constraint, which is what makes the create calls idempotent under concurrency.
Balances are never stored here: they live in the ledger (`piaohao.ledger`), one account per
member and purpose (balance, coins, credit, frozen).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

from piaohao.db.metadata import UTCDateTime, metadata


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, UTCDateTime(), nullable=nullable)


members = Table(
    "members", metadata,
    Column("member_id", String(40), primary_key=True),
    Column("merchant_id", String(40), ForeignKey("merchants.merchant_id"), nullable=False),
    Column("out_member_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    # "scrypt$n$r$p$salt_hex$hash_hex" (see piaohao.services.passwords); never returned or logged.
    Column("password_hash", String(256), nullable=False),
    Column("password_failures", Integer, nullable=False, server_default="0"),
    _ts("password_locked_until"),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("merchant_id", "out_member_id", name="uq_members_merchant_out_member_id"),
    CheckConstraint("password_failures >= 0", name="ck_members_password_failures"),
)

coin_grants = Table(
    "coin_grants", metadata,
    Column("grant_no", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("member_id", String(40), ForeignKey("members.member_id"), nullable=False),
    Column("out_request_no", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(256), nullable=True),
    Column("request_hash", String(64), nullable=False),
    _ts("created_at", False),
    UniqueConstraint("merchant_id", "out_request_no", name="uq_coin_grants_merchant_out_request_no"),
    CheckConstraint("amount > 0", name="ck_coin_grants_amount"),
)

topups = Table(
    "topups", metadata,
    Column("topup_no", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("member_id", String(40), ForeignKey("members.member_id"), nullable=False),
    Column("out_request_no", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # pending | succeeded | failed
    # The internal trade (purpose "topup") the member pays on the cashier.
    Column("trade_no", String(40), ForeignKey("trades.trade_no"), nullable=False),
    Column("notify_url", String(1024), nullable=True),
    Column("request_hash", String(64), nullable=False),
    _ts("created_at", False),
    _ts("finished_at"),
    _ts("updated_at", False),
    UniqueConstraint("merchant_id", "out_request_no", name="uq_topups_merchant_out_request_no"),
    UniqueConstraint("trade_no", name="uq_topups_trade_no"),
    CheckConstraint("amount > 0", name="ck_topups_amount"),
)

transfers = Table(
    "transfers", metadata,
    Column("transfer_no", String(40), primary_key=True),
    Column("merchant_id", String(40), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("out_request_no", String(64), nullable=False),
    Column("from_member_id", String(40), ForeignKey("members.member_id"), nullable=False),
    Column("to_member_id", String(40), ForeignKey("members.member_id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # succeeded (a transfer is atomic)
    Column("notify_url", String(1024), nullable=True),
    Column("request_hash", String(64), nullable=False),
    _ts("created_at", False),
    _ts("finished_at"),
    UniqueConstraint("merchant_id", "out_request_no", name="uq_transfers_merchant_out_request_no"),
    CheckConstraint("amount > 0", name="ck_transfers_amount"),
    CheckConstraint("from_member_id <> to_member_id", name="ck_transfers_two_members"),
)

# Withdrawals (a member's balance to their bank) and payouts (a merchant's settled money to a
# bank) share one table and one executor (`piaohao.workers.payouts`): both are "money leaves
# the platform through the channel's payout", retried and queried the same way.
disbursements = Table(
    "disbursements", metadata,
    Column("disbursement_no", String(40), primary_key=True),  # withdrawal_no / payout_no; the channel's key
    Column("kind", String(16), nullable=False),  # withdrawal | payout
    Column("merchant_id", String(40), nullable=False),
    Column("app_id", String(40), nullable=False),
    Column("out_request_no", String(64), nullable=False),
    Column("member_id", String(40), ForeignKey("members.member_id"), nullable=True),  # withdrawals
    Column("sub_merchant_id", String(40), nullable=True),  # payouts of a sub-merchant (later)
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("bank", String(64), nullable=False),
    # Needed to pay (and to pay again with the same key): sealed (`db.sealed`); views show the masked copy.
    Column("account_number_sealed", Text, nullable=False),
    Column("account_number_masked", String(34), nullable=False),
    Column("account_name", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # processing | succeeded | failed
    Column("channel", String(32), nullable=False),
    Column("hold_id", String(40), nullable=True),  # payouts: the ledger hold on merchant_settled
    Column("notify_url", String(1024), nullable=True),
    Column("request_hash", String(64), nullable=False),
    # The executor: `attempts` counts claims (0: the payout call was never made); a claim is a
    # conditional update on it and moves `next_attempt_at` past the call's lease.
    Column("attempts", Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at"),
    Column("channel_payout_no", String(64), nullable=True),
    Column("last_error", String(512), nullable=True),
    Column("fail_reason", String(256), nullable=True),
    _ts("parked_at"),  # tries exhausted with the outcome unknown: an alert waits for an operator
    _ts("created_at", False),
    _ts("finished_at"),
    _ts("updated_at", False),
    UniqueConstraint("merchant_id", "kind", "out_request_no", name="uq_disbursements_merchant_kind_out_request_no"),
    Index("ix_disbursements_status_next_attempt_at", "status", "next_attempt_at"),
    CheckConstraint("amount > 0", name="ck_disbursements_amount"),
    CheckConstraint("kind IN ('withdrawal', 'payout')", name="ck_disbursements_kind"),
    CheckConstraint("status IN ('processing', 'succeeded', 'failed')", name="ck_disbursements_status"),
)
