"""The append-only event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime
from migrations import function_sql

# PostgreSQL's functions, each created from versions/sql/0001_<function>.sql (what this
# revision created, frozen; the current definitions are in eventstore/sql/).
#
# `clustermon_append`, PostgreSQL's append: one round trip does the ordering lock, the duplicate
# check, the stream version check, the insert and the notification (eventstore/store.py says why
# each is there).
# - Each statement of a VOLATILE PL/pgSQL function takes a new snapshot under READ COMMITTED, so
#   the checks after the lock see every append that committed before it.
# - Plans are cached across calls as generic plans that cannot know the batch size, so there is
#   no join between the unnested arrays (a nested loop over 1,000 x 1,000 rows, once seen):
#   ids are looked up with `= ANY` on the unique index, and each row probes its stream's
#   current version with max() on the (stream, version) index. Expected versions come per row
#   (NULL: no expectation; the whole array NULL: none at all) for the same reason.
# - `plan_cache_mode = force_generic_plan`: a custom plan looks cheaper for every call, so
#   PostgreSQL would re-plan the insert on each call (0.5 ms, 5x the cost of running it).
#   `enable_seqscan = off`: every lookup here is a point probe; a plan made while the table
#   was small must not scan the whole table later.
# - A conflict is returned as rows (and nothing is inserted) rather than raised, so a caller that
#   appends inside its own transaction can still use that transaction.
# - recorded_at never decreases along positions (time travel and the staleness rules rely on it):
#   under the lock the client's stamp `recorded` is raised to the recorded_at of the last event
#   (one backward probe of the primary key). The client's clock stays the source of time (tests
#   pin it); this only keeps a writer that waited for the lock from stamping earlier than the
#   writer before it. A NULL `occurred` defaults to that stamp.
# Returns one row per stored event ('recorded', event_id, NULL, position, version, NULL, stamp),
# or one row per conflicting stream ('conflict', NULL, stream, NULL, actual, expected, NULL).
#
# `clustermon_append_one`, one event: the same steps with scalar parameters (no arrays to send
# and parse, no unnest, window or sort): about a third cheaper for the one-heartbeat request,
# the most frequent one.
#
# `clustermon_prepare_append`, large batches: the checks and the position reservation, then the
# rows travel by binary COPY (PostgreSQL parses COPY rows several times cheaper than INSERT
# parameters). Same lock, same snapshot rule, same conflict semantics as clustermon_append; the
# positions are drawn here, in ascending order, and the NOTIFY is queued here with the last of
# them (delivered on commit, dropped if the COPY fails and the transaction rolls back). Returns
# one row: the ids already stored, the conflicts (nothing reserved then), the current version of
# each stream receiving a new event, the positions for the new events in batch order, and the
# stamp the COPY must store as recorded_at (the client's `recorded`, raised to the last event's
# as in clustermon_append).

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FUNCTIONS = ("clustermon_append", "clustermon_append_one", "clustermon_prepare_append")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", Position, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream", sa.String(250), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.UniqueConstraint("stream", "version", name="uq_events_stream_version"),
    )
    op.create_index("ix_events_recorded_at", "events", ["recorded_at"])
    op.create_index("ix_events_type_position", "events", ["type", "position"])
    if op.get_bind().dialect.name == "postgresql":
        for function in FUNCTIONS:
            op.execute(function_sql(revision, function))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION clustermon_prepare_append")
        op.execute("DROP FUNCTION clustermon_append_one")
        op.execute("DROP FUNCTION clustermon_append")
    op.drop_index("ix_events_type_position", table_name="events")
    op.drop_index("ix_events_recorded_at", table_name="events")
    op.drop_table("events")
