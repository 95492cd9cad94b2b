"""Archived tails: a stream's version and last event, and the policy, survive archiving (#21).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

Once every event of a stream was archived (eventstore/retention.py, `delete_range`), the version
lookups (`max(version)` over `events`) restarted it at 0: the sweep's expected version conflicted
(a timeout silently dropped), a new event reused an archived (stream, version), and a component
whose last event was a timeout looked brand new. And the policy, folded from the `cluster` and
`monitor` streams, fell back to the default configuration once its changes were archived.

`archived_tails` keeps what the write side still needs of archived events: every event of the
policy streams and the last event of each stream left without events (eventstore/tables.py).
The four append functions look a stream's version up as
`coalesce(max over events, max over archived_tails, 0)`: COALESCE stops at the first non-NULL,
so a stream that kept events (every heartbeat of a live component) never pays for the second
probe. `clustermon_append_heartbeats` takes a stream's last event from `archived_tails` only
when `events` has none. Same signatures, same results while nothing is archived.
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime
from migrations import function_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Each function and the revision whose definition a downgrade puts back.
FUNCTIONS = {
    "clustermon_append": "0001",
    "clustermon_append_one": "0006",
    "clustermon_prepare_append": "0006",
    "clustermon_append_heartbeats": "0008",
}


def upgrade() -> None:
    op.create_table(
        "archived_tails",
        sa.Column("position", Position, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_archived_tails_stream_version", "archived_tails", ["stream", "version"])
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(function_sql(revision, function))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for function, previous in FUNCTIONS.items():
            op.execute(function_sql(previous, function, replace=True))
    op.drop_index("ix_archived_tails_stream_version", table_name="archived_tails")
    op.drop_table("archived_tails")
