"""Projection read tables (the current cluster state), checkpoints and snapshots.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    checkpoints = op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", Position, nullable=False, server_default="0"),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("events_applied", Position, nullable=False, server_default="0"),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
    )
    # The runner locks this row; it exists from the start (the code also re-creates it).
    op.bulk_insert(checkpoints, [{"name": "cluster_view", "position": 0, "generation": 0}])
    op.create_table(
        "cluster_view_cluster",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("configuration", sa.Text(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=True),
        sa.Column("monitor_resumed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "cluster_view_servers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("os", sa.String(100)),
        sa.Column("os_version", sa.String(100)),
        sa.Column("ip", sa.String(100)),
    )
    op.create_table(
        "cluster_view_components",
        sa.Column("server", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("verification", sa.String(20), nullable=False),
        sa.Column("product", sa.String(100)),
        sa.Column("product_version", sa.String(50)),
        sa.Column("encryption_key_fingerprint", sa.String(100)),
        sa.Column("message", sa.Text()),
        sa.Column("last_heartbeat_at", UTCDateTime()),
        sa.Column("last_heartbeat_position", Position),
        sa.Column("last_sent_at", UTCDateTime()),
        sa.Column("timed_out_at", UTCDateTime()),
        sa.Column("stream_version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "projection_snapshots",
        sa.Column("position", Position, primary_key=True, autoincrement=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("projection_snapshots")
    op.drop_table("cluster_view_components")
    op.drop_table("cluster_view_servers")
    op.drop_table("cluster_view_cluster")
    op.drop_table("projection_checkpoints")
