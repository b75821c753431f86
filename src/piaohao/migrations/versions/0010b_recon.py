"""reconciliation: bills (raw + normalised rows), runs, findings (work queue), custom rules

Revision ID: 0010b
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.metadata

revision = '0010b'
down_revision = '0009'
branch_labels = None
depends_on = None

TS = piaohao.db.metadata.UTCDateTime


def upgrade() -> None:
    op.create_table('recon_bills',
    sa.Column('bill_id', sa.String(length=40), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('business_date', sa.String(length=10), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('row_count', sa.Integer(), nullable=False),
    sa.Column('raw_gzip', sa.LargeBinary(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('fetched_at', TS(), nullable=False),
    sa.PrimaryKeyConstraint('bill_id', name=op.f('pk_recon_bills')),
    sa.UniqueConstraint('channel', 'business_date', 'sha256', name='uq_recon_bills_channel_date_sha256'))
    op.create_table('recon_bill_rows',
    sa.Column('bill_id', sa.String(length=40), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('record_type', sa.String(length=16), nullable=False),
    sa.Column('payment_no', sa.String(length=64), nullable=False),
    sa.Column('refund_no', sa.String(length=64), nullable=True),
    sa.Column('channel_txn_no', sa.String(length=64), nullable=False),
    sa.Column('channel_refund_no', sa.String(length=64), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('finished_at', TS(), nullable=False),
    sa.PrimaryKeyConstraint('bill_id', 'line_no', name=op.f('pk_recon_bill_rows')))
    op.create_table('recon_runs',
    sa.Column('run_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('business_date', sa.String(length=10), nullable=True),
    sa.Column('channels', sa.Text(), nullable=False),
    sa.Column('engine', sa.String(length=16), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('findings', sa.Integer(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('started_at', TS(), nullable=False),
    sa.Column('finished_at', TS(), nullable=False),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_recon_runs')))
    op.create_table('recon_findings',
    sa.Column('finding_id', sa.String(length=40), nullable=False),
    sa.Column('dedupe_key', sa.String(length=255), nullable=False),
    sa.Column('class', sa.String(length=24), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('subject_type', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.String(length=64), nullable=False),
    sa.Column('business_date', sa.String(length=10), nullable=True),
    sa.Column('expected', sa.Text(), nullable=True),
    sa.Column('actual', sa.Text(), nullable=True),
    sa.Column('details', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('run_id', sa.String(length=40), nullable=True),
    sa.Column('detected_at', TS(), nullable=False),
    sa.Column('resolution', sa.String(length=16), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolution_note', sa.String(length=1024), nullable=True),
    sa.Column('adjustment', sa.Text(), nullable=True),
    sa.Column('resolved_at', TS(), nullable=True),
    sa.PrimaryKeyConstraint('finding_id', name=op.f('pk_recon_findings')),
    sa.UniqueConstraint('dedupe_key', name='uq_recon_findings_dedupe_key'))
    with op.batch_alter_table('recon_findings', schema=None) as batch_op:
        batch_op.create_index('ix_recon_findings_status_class', ['status', 'class'], unique=False)
        batch_op.create_index('ix_recon_findings_business_date', ['business_date'], unique=False)
    op.create_table('recon_rules',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('sql', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', TS(), nullable=False),
    sa.Column('updated_at', TS(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_recon_rules')))


def downgrade() -> None:
    op.drop_table('recon_rules')
    with op.batch_alter_table('recon_findings', schema=None) as batch_op:
        batch_op.drop_index('ix_recon_findings_business_date')
        batch_op.drop_index('ix_recon_findings_status_class')
    op.drop_table('recon_findings')
    op.drop_table('recon_runs')
    op.drop_table('recon_bill_rows')
    op.drop_table('recon_bills')
