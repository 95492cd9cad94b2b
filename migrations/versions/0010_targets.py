"""Polled targets: their folded state in the read model, and each one's last poll.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

`cluster_view_targets`: one row per target, the JSON of its folded `TargetState` (the runner
keeps it with the other read tables; no event before this revision configures a target, so it
starts empty and consistent). `target_polls`: what the last poll of each target got; written by
the leading scheduler's poller, read by `GET /targets`. Not events: a poll that succeeds is
already in the log as its heartbeats, and one row per poll would double the log for nothing.
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_view_targets",
        sa.Column("server", sa.String(200), primary_key=True),
        sa.Column("target", sa.Text(), nullable=False),
    )
    op.create_table(
        "target_polls",
        sa.Column("server", sa.String(200), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("target_polls")
    op.drop_table("cluster_view_targets")
