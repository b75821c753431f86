"""rate_buckets: the per-merchant rate limit shared by every API process

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("rate_buckets",
    sa.Column("merchant_id", sa.String(length=64), nullable=False),
    sa.Column("tokens_milli", sa.BigInteger(), nullable=False),
    sa.Column("refilled_at_us", sa.BigInteger(), nullable=False),
    sa.Column("last_lease", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_rate_buckets"))
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
