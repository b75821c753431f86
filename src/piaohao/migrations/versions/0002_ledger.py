"""ledger: accounts, balances (sharded rows), append-only entries and legs, holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 21:35:13.017953
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.schema

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_accounts',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('owner_type', sa.String(length=24), nullable=False),
    sa.Column('owner_id', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('normal_side', sa.String(length=6), nullable=False),
    sa.Column('constraint_kind', sa.String(length=16), nullable=False),
    sa.Column('shard_count', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("constraint_kind IN ('none', 'non_negative', 'credit_limit')",
        name='ck_ledger_accounts_constraint_kind'),
    sa.CheckConstraint("normal_side IN ('debit', 'credit')", name='ck_ledger_accounts_normal_side'),
    sa.CheckConstraint('shard_count >= 1', name='ck_ledger_accounts_shard_count'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('owner_type', 'owner_id', 'purpose', 'currency',
        name='uq_ledger_accounts_owner_purpose_currency')
    )
    op.create_table('ledger_entries',
    sa.Column('entry_id', sa.String(length=40), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.String(length=64), nullable=False),
    sa.Column('operation', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('hold_id', sa.String(length=40), nullable=True),
    sa.Column('description', sa.String(length=256), nullable=True),
    sa.Column('created_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('posted', 'pending')", name='ck_ledger_entries_kind'),
    sa.PrimaryKeyConstraint('entry_id', name=op.f('pk_ledger_entries')),
    sa.UniqueConstraint('source_type', 'source_id', 'operation', name='uq_ledger_entries_source_operation')
    )
    op.create_table('ledger_balances',
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('posted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pending_debits', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pending_credits', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('available', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('available_floor', sa.BigInteger(), nullable=True),
    sa.CheckConstraint('available_floor IS NULL OR available >= available_floor',
        name='ck_ledger_balances_available_floor'),
    sa.CheckConstraint('pending_debits >= 0 AND pending_credits >= 0', name='ck_ledger_balances_pending'),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.account_id'],
        name=op.f('fk_ledger_balances_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'shard', name=op.f('pk_ledger_balances'))
    )
    op.create_table('ledger_holds',
    sa.Column('hold_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('expires_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_entry_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'posted', 'voided', 'expired')", name='ck_ledger_holds_status'),
    sa.ForeignKeyConstraint(['hold_id'], ['ledger_entries.entry_id'],
        name=op.f('fk_ledger_holds_hold_id_ledger_entries')),
    sa.PrimaryKeyConstraint('hold_id', name=op.f('pk_ledger_holds'))
    )
    with op.batch_alter_table('ledger_holds', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_holds_status_expires_at', ['status', 'expires_at'], unique=False)

    op.create_table('ledger_legs',
    sa.Column('leg_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('is_pending', sa.Boolean(), nullable=False),
    sa.Column('created_at', piaohao.db.schema.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount <> 0', name='ck_ledger_legs_amount_nonzero'),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.account_id'],
        name=op.f('fk_ledger_legs_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entries.entry_id'],
        name=op.f('fk_ledger_legs_entry_id_ledger_entries')),
    sa.PrimaryKeyConstraint('leg_id', name=op.f('pk_ledger_legs'))
    )
    with op.batch_alter_table('ledger_legs', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_legs_account_id_created_at', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_ledger_legs_entry_id', ['entry_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ledger_legs', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_legs_entry_id')
        batch_op.drop_index('ix_ledger_legs_account_id_created_at')

    op.drop_table('ledger_legs')
    with op.batch_alter_table('ledger_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_holds_status_expires_at')

    op.drop_table('ledger_holds')
    op.drop_table('ledger_balances')
    op.drop_table('ledger_entries')
    op.drop_table('ledger_accounts')
