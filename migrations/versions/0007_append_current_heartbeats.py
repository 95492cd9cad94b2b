"""Heartbeat ingest in one round trip on PostgreSQL: `clustermon_append_heartbeats`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27

A group of heartbeats used to be decided in two round trips: read the components' last events
(and the stored ids), decide in Python, append with the stream versions seen. When two API
processes wrote the same components, the append conflicted and the group was decided again
while holding the ordering lock across the Python decision, which serialised both processes.

Almost every heartbeat comes from a component that is current: nothing is decided, the heartbeat
is simply appended. This function checks that server-side, under the ordering lock, and then
appends; nothing can move in between, so there is no version to expect and no conflict. It
refuses the whole group (appending nothing) when it cannot append without a decision:
- 'policy' rows: the `cluster` or `monitor` stream is not at the version the client judged by
  (the configuration changed, or the monitor recorded a gap);
- 'stale' rows: a component whose last event is a `ComponentTimedOut`, or a `HeartbeatRecorded`
  recorded before its row's `current_since` (our clock minus its timeout, as the client computed
  it from that policy; NULL when a monitor resumption keeps every heartbeat current). Its
  heartbeat ends an outage: the client decides the recovery (domain/decisions.py).
Otherwise it returns one 'recorded' row per stored event, as `clustermon_append` does, with the
same lock, stamp, duplicate and NOTIFY rules (0001 explains them). Only `maybe_duplicates` (the
ids a client chose) are looked up: ids we generated ourselves cannot be stored yet, and each
lookup is an index probe (the unique index still refuses a collision).
"""

from alembic import op

from migrations import function_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The function: versions/sql/0007_clustermon_append_heartbeats.sql. The group travels as one JSON
# array of rows, [event_id, stream, data, metadata, occurred_at, current_since] (data and
# metadata as JSON text inside a string, so they are stored exactly as the client wrote them),
# and the event type once: psycopg builds a binary array from a Python list in Python, ~10 us per
# array, where orjson dumps the whole group in a few microseconds (measured: ~35 us less client
# CPU per call than eleven arrays, the same server time).


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(function_sql(revision, "clustermon_append_heartbeats"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION clustermon_append_heartbeats")
