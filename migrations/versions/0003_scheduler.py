"""Scheduler liveness: when each leading scheduler last swept (to detect monitor gaps).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_liveness",
        sa.Column("detector", sa.String(200), primary_key=True),
        sa.Column("leading_since", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_liveness")
