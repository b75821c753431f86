"""more ways to pay: bound cards (quick pay, numbers sealed), agreements and their debits, PayInfo URLs (pull mode)

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
    op.create_table('agreements',
    sa.Column('agreement_no', sa.String(length=40), nullable=False),
    sa.Column('merchant_id', sa.String(length=40), nullable=False),
    sa.Column('app_id', sa.String(length=40), nullable=False),
    sa.Column('out_agreement_no', sa.String(length=64), nullable=False),
    sa.Column('member_id', sa.String(length=40), nullable=True),
    sa.Column('buyer_id', sa.String(length=64), nullable=True),
    sa.Column('max_amount_per_debit', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('notify_url', sa.Text(), nullable=True),
    sa.Column('channel', sa.String(length=64), nullable=False),
    sa.Column('sign_url', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('next_query_at', piaohao.db.metadata.UTCDateTime(), nullable=True),
    sa.Column('signed_at', piaohao.db.metadata.UTCDateTime(), nullable=True),
    sa.Column('ended_at', piaohao.db.metadata.UTCDateTime(), nullable=True),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('updated_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.merchant_id'],
                            name=op.f('fk_agreements_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('agreement_no', name=op.f('pk_agreements')),
    sa.UniqueConstraint('merchant_id', 'out_agreement_no', name='uq_agreements_merchant_out_agreement_no')
    )
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.create_index('ix_agreements_status_next_query_at', ['status', 'next_query_at'], unique=False)
    op.create_table('agreement_debits',
    sa.Column('trade_no', sa.String(length=40), nullable=False),
    sa.Column('agreement_no', sa.String(length=40), nullable=False),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agreement_no'], ['agreements.agreement_no'],
                            name=op.f('fk_agreement_debits_agreement_no_agreements')),
    sa.PrimaryKeyConstraint('trade_no', name=op.f('pk_agreement_debits'))
    )
    with op.batch_alter_table('agreement_debits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agreement_debits_agreement_no'), ['agreement_no'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('agreement_debits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agreement_debits_agreement_no'))
    op.drop_table('agreement_debits')
    with op.batch_alter_table('agreements', schema=None) as batch_op:
        batch_op.drop_index('ix_agreements_status_next_query_at')
    op.drop_table('agreements')
    op.drop_table('merchant_payinfo')
    with op.batch_alter_table('member_cards', schema=None) as batch_op:
        batch_op.drop_index('ix_member_cards_member')
    op.drop_table('member_cards')
