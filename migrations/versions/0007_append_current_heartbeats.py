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

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The group travels as one JSON array of rows, [event_id, stream, data, metadata, occurred_at,
# current_since] (data and metadata as JSON text inside a string, so they are stored exactly as
# the client wrote them), and the event type once: psycopg builds a binary array from a Python
# list in Python, ~10 us per array, where orjson dumps the whole group in a few microseconds
# (measured: ~35 us less client CPU per call than eleven arrays, the same server time).
APPEND_HEARTBEATS_FUNCTION = """
CREATE FUNCTION clustermon_append_heartbeats(
    serialize boolean, lock_key bigint, channel text, type_ text, schema_version_ smallint,
    rows_ jsonb, recorded timestamptz, maybe_duplicates uuid[],
    policy_streams text[], policy_versions integer[]
) RETURNS TABLE (
    kind text, event_id uuid, stream text, "position" bigint, version integer,
    recorded_at timestamptz
) LANGUAGE plpgsql VOLATILE
  SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
#variable_conflict use_column
DECLARE
    stamp timestamptz;
    dups uuid[];
BEGIN
    IF serialize THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    RETURN QUERY
        SELECT 'policy', NULL::uuid, p.s, NULL::bigint, b.v, NULL::timestamptz
        FROM unnest(policy_streams, policy_versions) AS p(s, x)
        CROSS JOIN LATERAL (
            SELECT coalesce(max(e.version), 0) AS v FROM events e WHERE e.stream = p.s
        ) AS b
        WHERE b.v <> p.x;
    IF FOUND THEN
        RETURN;
    END IF;
    dups := ARRAY(SELECT e.event_id FROM events e WHERE e.event_id = ANY(maybe_duplicates));
    RETURN QUERY
        SELECT DISTINCT 'stale', NULL::uuid, t.stream::text, NULL::bigint, t.version, t.recorded_at
        FROM jsonb_array_elements(rows_) AS u(r)
        CROSS JOIN LATERAL (
            SELECT e.stream, e.version, e.type, e.recorded_at FROM events e
            WHERE e.stream = u.r->>1 ORDER BY e.version DESC LIMIT 1
        ) AS t
        WHERE NOT (u.r->>0)::uuid = ANY(dups)
          AND (t.type = 'ComponentTimedOut'
               OR (t.type = 'HeartbeatRecorded' AND t.recorded_at < (u.r->>5)::timestamptz));
    IF FOUND THEN
        RETURN;
    END IF;
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    RETURN QUERY
        WITH ins AS (
            INSERT INTO events AS e (event_id, stream, version, type, schema_version, data,
                                     metadata, occurred_at, recorded_at)
            SELECT u.i, u.s,
                   coalesce((SELECT max(e2.version) FROM events e2 WHERE e2.stream = u.s), 0)
                       + row_number() OVER (PARTITION BY u.s ORDER BY u.n),
                   type_, schema_version_, u.d, u.m, coalesce(u.o, stamp), stamp
            FROM (SELECT (x.r->>0)::uuid, x.r->>1, x.r->>2, x.r->>3, (x.r->>4)::timestamptz, x.n
                  FROM jsonb_array_elements(rows_) WITH ORDINALITY AS x(r, n))
                 AS u(i, s, d, m, o, n)
            WHERE NOT u.i = ANY(dups)
            ORDER BY u.n
            RETURNING e.event_id, e.position, e.version, e.recorded_at
        ), note AS (
            SELECT pg_notify(channel, max(ins.position)::text) FROM ins HAVING count(*) > 0
        )
        SELECT 'recorded', ins.event_id, NULL::text, ins.position, ins.version, ins.recorded_at
        FROM ins LEFT JOIN note ON true;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_HEARTBEATS_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION clustermon_append_heartbeats")
