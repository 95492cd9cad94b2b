"""Stored availability reports (daily, weekly, on demand).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("position", Position, nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=True),
        # "daily/<period start>" for scheduled reports (two schedulers never store one twice);
        # NULL for reports asked for by hand, which may be recomputed at will.
        sa.Column("schedule_key", sa.String(100), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.UniqueConstraint("schedule_key", name="uq_reports_schedule_key"),
        sa.CheckConstraint("kind IN ('daily', 'weekly', 'manual')", name="ck_reports_kind"),
    )
    op.create_index("ix_reports_period_end", "reports", ["period_end"])


def downgrade() -> None:
    op.drop_index("ix_reports_period_end", table_name="reports")
    op.drop_table("reports")
