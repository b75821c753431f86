"""channel accounts: merchants' credentials at Alipay, WeChat Pay and the sandbox (secrets sealed)

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.metadata

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('channel_accounts',
    sa.Column('channel_account_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.String(length=40), nullable=True),
    sa.Column('display_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('config_public', sa.Text(), nullable=False),
    sa.Column('config_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('updated_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('channel_account_id', name=op.f('pk_channel_accounts'))
    )
    with op.batch_alter_table('channel_accounts', schema=None) as batch_op:
        batch_op.create_index('ix_channel_accounts_merchant_kind', ['merchant_id', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('channel_accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_channel_accounts_merchant_kind')
    op.drop_table('channel_accounts')
