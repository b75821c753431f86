"""operations: alerts deduplicated and rate-limited per source, resolvable; the audit log; wrong
payment passwords counted per trade

Revision ID: 0010a
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.metadata

revision = '0010a'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trades', schema=None) as batch_op:
        batch_op.add_column(sa.Column('password_failures', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('dedupe_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('occurrences', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('last_seen_at', piaohao.db.metadata.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resolution_note', sa.String(length=1024), nullable=True))
        batch_op.create_index('ix_alerts_dedupe_key_status', ['dedupe_key', 'status'], unique=False)
        batch_op.create_index('ix_alerts_source_created_at', ['source', 'created_at'], unique=False)
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('note', sa.String(length=1024), nullable=True),
    sa.Column('details', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_at')
    op.drop_table('audit_log')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_source_created_at')
        batch_op.drop_index('ix_alerts_dedupe_key_status')
        for name in ('resolution_note', 'resolved_by', 'last_seen_at', 'occurrences', 'dedupe_key', 'source'):
            batch_op.drop_column(name)
    with op.batch_alter_table('trades', schema=None) as batch_op:
        batch_op.drop_column('password_failures')
