"""Notifications: the deliveries (the outbox the log feeds), and channels and silences in the
read model.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

`notification_deliveries`: one row per message a channel is to get (or got, or was spared),
written by the notify follower in the same transaction as its checkpoint (the
`projection_checkpoints` row named `notify`), claimed and updated by the sender. Its `id` is
derived from the channel and the event that caused it, unique: a follower that re-reads an event
cannot queue its message twice. `cluster_view_cluster.channels` / `.silences`: JSON of the
folded channels and silences (no event before this revision configures any).
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_view_cluster") as batch:
        batch.add_column(sa.Column("channels", sa.Text(), nullable=True))
        batch.add_column(sa.Column("silences", sa.Text(), nullable=True))
    op.create_table(
        "notification_deliveries",
        sa.Column("seq", Position, primary_key=True, autoincrement=True),
        sa.Column("id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("trigger", sa.String(30), nullable=False),
        sa.Column("server", sa.String(200), nullable=True),
        sa.Column("component", sa.String(20), nullable=True),
        sa.Column("source_position", Position, nullable=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("suppressed_by", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_index(
        "ix_notification_deliveries_channel", "notification_deliveries", ["channel", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_channel", table_name="notification_deliveries")
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    with op.batch_alter_table("cluster_view_cluster") as batch:
        batch.drop_column("silences")
        batch.drop_column("channels")
