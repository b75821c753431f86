"""trades: indexes on created_at and paid_at (the console's newest-first lists and 14-day charts)

Without them every list page and chart read the whole trades table. On a large PostgreSQL table an
operator may prefer to build them first with CREATE INDEX CONCURRENTLY under the same names; this
migration then finds them and does nothing.

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trades_created_at", "trades", ["created_at", "trade_no"], unique=False, if_not_exists=True)
    op.create_index("ix_trades_paid_at", "trades", ["paid_at"], unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_trades_paid_at", table_name="trades")
    op.drop_index("ix_trades_created_at", table_name="trades")
