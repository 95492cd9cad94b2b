"""The append-only event log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from eventstore.tables import Position, UTCDateTime

# PostgreSQL's append: one round trip does the ordering lock, the duplicate check, the stream
# version check, the insert and the notification (eventstore/store.py says why each is there).
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
APPEND_FUNCTION = """
CREATE FUNCTION clustermon_append(
    serialize boolean, lock_key bigint, channel text,
    ids uuid[], streams text[], types text[], schema_versions smallint[],
    datas text[], metadatas text[], occurred timestamptz[], recorded timestamptz,
    expected_versions integer[]
) RETURNS TABLE (
    kind text, event_id uuid, stream text, "position" bigint, version integer, expected integer,
    recorded_at timestamptz
) LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
#variable_conflict use_column
DECLARE
    stamp timestamptz;
BEGIN
    IF serialize THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    IF expected_versions IS NOT NULL THEN
        RETURN QUERY
            SELECT DISTINCT 'conflict', NULL::uuid, u.s, NULL::bigint, b.v, u.x,
                            NULL::timestamptz
            FROM unnest(ids, streams, expected_versions) AS u(i, s, x)
            CROSS JOIN LATERAL (
                SELECT coalesce(max(e.version), 0) AS v FROM events e WHERE e.stream = u.s
            ) AS b
            WHERE u.x IS NOT NULL AND u.x <> b.v
              AND NOT u.i = ANY(ARRAY(SELECT e.event_id FROM events e WHERE e.event_id = ANY(ids)));
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    -- Stored ids are skipped before the versions are numbered (the window runs after WHERE),
    -- so stream versions stay contiguous. ORDER BY n: positions are drawn in batch order.
    RETURN QUERY
        WITH ins AS (
            INSERT INTO events AS e (event_id, stream, version, type, schema_version, data,
                                     metadata, occurred_at, recorded_at)
            SELECT u.i, u.s,
                   coalesce((SELECT max(e2.version) FROM events e2 WHERE e2.stream = u.s), 0)
                       + row_number() OVER (PARTITION BY u.s ORDER BY u.n),
                   u.t, u.sv, u.d, u.m, coalesce(u.o, stamp), stamp
            FROM unnest(ids, streams, types, schema_versions, datas, metadatas, occurred)
                 WITH ORDINALITY AS u(i, s, t, sv, d, m, o, n)
            WHERE NOT u.i = ANY(ARRAY(
                SELECT e3.event_id FROM events e3 WHERE e3.event_id = ANY(ids)))
            ORDER BY u.n
            RETURNING e.event_id, e.position, e.version, e.recorded_at
        ), note AS (
            SELECT pg_notify(channel, max(ins.position)::text) FROM ins HAVING count(*) > 0
        )
        SELECT 'recorded', ins.event_id, NULL::text, ins.position, ins.version, NULL::integer,
               ins.recorded_at
        FROM ins LEFT JOIN note ON true;
END
$fn$
"""

# One event: the same steps with scalar parameters (no arrays to send and parse, no unnest,
# window or sort): about a third cheaper for the one-heartbeat request, the most frequent one.
APPEND_ONE_FUNCTION = """
CREATE FUNCTION clustermon_append_one(
    serialize boolean, lock_key bigint, channel text,
    id uuid, stream_ text, type_ text, schema_version_ smallint, data_ text, metadata_ text,
    occurred timestamptz, recorded timestamptz, expected_version integer
) RETURNS TABLE (
    kind text, event_id uuid, stream text, "position" bigint, version integer, expected integer,
    recorded_at timestamptz
) LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
#variable_conflict use_column
DECLARE
    current integer;
    stamp timestamptz;
BEGIN
    IF serialize THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    IF expected_version IS NOT NULL
       AND NOT EXISTS (SELECT FROM events e WHERE e.event_id = id) THEN
        current := coalesce((SELECT max(e.version) FROM events e WHERE e.stream = stream_), 0);
        IF current <> expected_version THEN
            RETURN QUERY SELECT 'conflict', NULL::uuid, stream_, NULL::bigint, current,
                                expected_version, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    RETURN QUERY
        WITH ins AS (
            INSERT INTO events AS e (event_id, stream, version, type, schema_version, data,
                                     metadata, occurred_at, recorded_at)
            SELECT id, stream_,
                   coalesce((SELECT max(e2.version) FROM events e2 WHERE e2.stream = stream_), 0)
                       + 1,
                   type_, schema_version_, data_, metadata_, coalesce(occurred, stamp), stamp
            WHERE NOT EXISTS (SELECT FROM events e3 WHERE e3.event_id = id)
            RETURNING e.event_id, e.position, e.version, e.recorded_at
        ), note AS (
            SELECT pg_notify(channel, max(ins.position)::text) FROM ins HAVING count(*) > 0
        )
        SELECT 'recorded', ins.event_id, NULL::text, ins.position, ins.version, NULL::integer,
               ins.recorded_at
        FROM ins LEFT JOIN note ON true;
END
$fn$
"""

# Large batches: the checks and the position reservation, then the rows travel by binary COPY
# (PostgreSQL parses COPY rows several times cheaper than INSERT parameters). Same lock, same
# snapshot rule, same conflict semantics as clustermon_append; the positions are drawn here, in
# ascending order, and the NOTIFY is queued here with the last of them (delivered on commit,
# dropped if the COPY fails and the transaction rolls back). Returns one row: the ids already
# stored, the conflicts (nothing reserved then), the current version of each stream receiving a
# new event, the positions for the new events in batch order, and the stamp the COPY must store
# as recorded_at (the client's `recorded`, raised to the last event's as in clustermon_append).
PREPARE_FUNCTION = """
CREATE FUNCTION clustermon_prepare_append(
    serialize boolean, lock_key bigint, channel text,
    ids uuid[], streams text[], expected_versions integer[], recorded timestamptz,
    OUT dups uuid[], OUT conflict_streams text[], OUT conflict_actual integer[],
    OUT conflict_expected integer[], OUT cur_streams text[], OUT cur_versions integer[],
    OUT positions bigint[], OUT stamp timestamptz
) LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
#variable_conflict use_column
DECLARE
    fresh integer;
BEGIN
    IF serialize THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    dups := ARRAY(SELECT e.event_id FROM events e WHERE e.event_id = ANY(ids));
    SELECT array_agg(f.s),
           array_agg(coalesce((SELECT max(e.version) FROM events e WHERE e.stream = f.s), 0))
        INTO cur_streams, cur_versions
        FROM (SELECT DISTINCT u.s FROM unnest(ids, streams) AS u(i, s)
              WHERE NOT u.i = ANY(dups)) AS f;
    IF cur_streams IS NULL THEN
        RETURN;  -- every event is a duplicate
    END IF;
    IF expected_versions IS NOT NULL THEN
        SELECT array_agg(x.s), array_agg(x.cur), array_agg(x.x)
            INTO conflict_streams, conflict_actual, conflict_expected
            FROM (SELECT DISTINCT u.s, u.x,
                         coalesce((SELECT max(e.version) FROM events e WHERE e.stream = u.s), 0)
                             AS cur
                  FROM unnest(ids, streams, expected_versions) AS u(i, s, x)
                  WHERE u.x IS NOT NULL AND NOT u.i = ANY(dups)) AS x
            WHERE x.cur <> x.x;
        IF conflict_streams IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    fresh := cardinality(ids) - cardinality(dups);  -- the client sends each id once
    positions := ARRAY(SELECT nextval(pg_get_serial_sequence('events', 'position'))
                       FROM generate_series(1, fresh) ORDER BY 1);
    PERFORM pg_notify(channel, positions[fresh]::text);
END
$fn$
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


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
        op.execute(APPEND_FUNCTION)
        op.execute(APPEND_ONE_FUNCTION)
        op.execute(PREPARE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION clustermon_prepare_append")
        op.execute("DROP FUNCTION clustermon_append_one")
        op.execute("DROP FUNCTION clustermon_append")
    op.drop_index("ix_events_type_position", table_name="events")
    op.drop_index("ix_events_recorded_at", table_name="events")
    op.drop_table("events")
