"""console: operators (roles, scrypt password hashes, sign-in lockout) and their sessions (token hashes)

Revision ID: 0012a
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

import piaohao.db.metadata

revision = '0012a'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('operators',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('failed_signins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', piaohao.db.metadata.UTCDateTime(), nullable=True),
    sa.Column('last_signin_at', piaohao.db.metadata.UTCDateTime(), nullable=True),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name='ck_operators_role'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_operators'))
    )
    op.create_table('operator_sessions',
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('created_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.Column('expires_at', piaohao.db.metadata.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['operator'], ['operators.name'],
                            name=op.f('fk_operator_sessions_operator_operators')),
    sa.PrimaryKeyConstraint('session_hash', name=op.f('pk_operator_sessions'))
    )
    with op.batch_alter_table('operator_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_operator_sessions_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('operator_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_operator_sessions_expires_at')
    op.drop_table('operator_sessions')
    op.drop_table('operators')
