"""merge the wave-2 branches (operations, reconciliation, more ways to pay) into one head

Revision ID: 0011
Revises: 0010a, 0010b, 0010c
"""

revision = "0011"
down_revision = ("0010a", "0010b", "0010c")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
