"""Projection read tables, checkpoints and snapshots (placeholder until issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
