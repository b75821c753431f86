"""merge the console (operators, sessions) and sealing-at-rest branches into one head

Revision ID: 0013
Revises: 0012a, 0012b
"""

revision = "0013"
down_revision = ("0012a", "0012b")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
