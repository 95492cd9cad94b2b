"""SQLAlchemy Core tables of the read side. Migration 0002 creates them.

The read tables hold the folded `ClusterState` (not the evaluated view): staleness depends on
`now`, so the view is evaluated at read time from these rows with the same pure rules.
"""

import sqlalchemy as sa

from eventstore.tables import Position, UTCDateTime

metadata = sa.MetaData()

VIEW = "cluster_view"  # name of the one projection that keeps the read tables

# One row per projection: the last event folded in. `generation` changes on every rebuild so
# in-memory caches keyed on (generation, position) never serve a swapped-out state.
checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", Position, nullable=False, server_default="0"),
    sa.Column("generation", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("events_applied", Position, nullable=False, server_default="0"),
    sa.Column("updated_at", UTCDateTime(), nullable=True),
)

# The cluster-wide part of the state (one row, id = 1).
cluster = sa.Table(
    "cluster_view_cluster",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("configuration", sa.Text(), nullable=False),  # JSON of Configuration
    sa.Column("recorded_at", UTCDateTime(), nullable=True),
    sa.Column("monitor_resumed_at", UTCDateTime(), nullable=True),
    # JSON lists of the notification channels and silences (few, rarely changed: rewritten
    # with the row). NULL before migration 0011's first write.
    sa.Column("channels", sa.Text(), nullable=True),
    sa.Column("silences", sa.Text(), nullable=True),
)

servers = sa.Table(
    "cluster_view_servers",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("os", sa.String(100)),
    sa.Column("os_version", sa.String(100)),
    sa.Column("ip", sa.String(100)),
)

components = sa.Table(
    "cluster_view_components",
    metadata,
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

# One row per polled target: the JSON of its TargetState (configuration and failure).
targets = sa.Table(
    "cluster_view_targets",
    metadata,
    sa.Column("server", sa.String(200), primary_key=True),
    sa.Column("target", sa.Text(), nullable=False),
)

# Full-state snapshots for time travel: zlib-compressed JSON of ClusterState.to_dict().
snapshots = sa.Table(
    "projection_snapshots",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),  # of the event at `position`
    sa.Column("taken_at", UTCDateTime(), nullable=False),  # our clock when written
    sa.Column("state", sa.LargeBinary(), nullable=False),
)
