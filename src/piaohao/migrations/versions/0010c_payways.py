"""more ways to pay: members' bound cards (quick pay, numbers sealed) and merchants' PayInfo URLs (pull mode)

Revision ID: 0010c
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.metadata

revision = '0010c'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('member_cards',
    sa.Column('card_id', sa.String(length=40), nullable=False),
    sa.Column('merchant_id', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('channel_card_token', sa.String(length=64), nullable=True),
    sa.Column('bank', sa.String(length=16), nullable=True),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('card_no_sealed', sa.Text(), nullable=False),
    sa.Column('id_number_sealed', sa.Text(), nullable=False),
    sa.Column('phone_sealed', sa.Text(), nullable=False),
    sa.Column('holder_name_sealed', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('sms_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('updated_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.merchant_id'],
                            name=op.f('fk_member_cards_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('card_id', name=op.f('pk_member_cards'))
    )
    with op.batch_alter_table('member_cards', schema=None) as batch_op:
        batch_op.create_index('ix_member_cards_member', ['member_id'], unique=False)
    op.create_table('merchant_payinfo',
    sa.Column('merchant_id', sa.String(length=40), nullable=False),
    sa.Column('payinfo_url', sa.Text(), nullable=False),
    sa.Column('updated_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.merchant_id'],
                            name=op.f('fk_merchant_payinfo_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_merchant_payinfo'))
    )


def downgrade() -> None:
    op.drop_table('merchant_payinfo')
    with op.batch_alter_table('member_cards', schema=None) as batch_op:
        batch_op.drop_index('ix_member_cards_member')
    op.drop_table('member_cards')
