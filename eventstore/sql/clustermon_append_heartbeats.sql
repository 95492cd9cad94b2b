-- Heartbeat ingest in one round trip (eventstore/postgres_heartbeats.py): refuses the group when
-- a decision is needed ('policy' or 'stale' rows), else appends it ('recorded' rows).
-- Last changed by migration 0014 (migrations/versions/0014_archived_tails.py: versions and last
-- events fall back to `archived_tails`; 0008_append_heartbeats_one_lookup.py made the one lookup,
-- 0007_append_current_heartbeats.py says what the function decides and why).
CREATE OR REPLACE FUNCTION clustermon_append_heartbeats(
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
            SELECT coalesce((SELECT max(e.version) FROM events e WHERE e.stream = p.s),
                            (SELECT max(a.version) FROM archived_tails a WHERE a.stream = p.s),
                            0) AS v
        ) AS b
        WHERE b.v <> p.x;
    IF FOUND THEN
        RETURN;
    END IF;
    dups := ARRAY(SELECT e.event_id FROM events e WHERE e.event_id = ANY(maybe_duplicates));
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    RETURN QUERY
        WITH u AS MATERIALIZED (
            SELECT (x.r->>0)::uuid AS i, x.r->>1 AS s, x.r->>2 AS d, x.r->>3 AS m,
                   (x.r->>4)::timestamptz AS o, (x.r->>5)::timestamptz AS cs, x.n
            FROM jsonb_array_elements(rows_) WITH ORDINALITY AS x(r, n)
            WHERE NOT (x.r->>0)::uuid = ANY(dups)
        ), t AS MATERIALIZED (
            SELECT d.s, l.version, l.type, l.recorded_at
            FROM (SELECT DISTINCT u.s FROM u) AS d
            LEFT JOIN LATERAL (
                -- The archived tail only when the stream kept no event: LIMIT 1 stops the
                -- Append after its first branch returns a row.
                (SELECT e.version, e.type, e.recorded_at FROM events e
                 WHERE e.stream = d.s ORDER BY e.version DESC LIMIT 1)
                UNION ALL
                (SELECT a.version, a.type, a.recorded_at FROM archived_tails a
                 WHERE a.stream = d.s ORDER BY a.version DESC LIMIT 1)
                LIMIT 1
            ) AS l ON true
        ), stale AS MATERIALIZED (
            SELECT DISTINCT t.s, t.version, t.recorded_at FROM u JOIN t ON t.s = u.s
            WHERE t.type = 'ComponentTimedOut'
               OR (t.type = 'HeartbeatRecorded' AND t.recorded_at < u.cs)
        ), ins AS (
            INSERT INTO events AS e (event_id, stream, version, type, schema_version, data,
                                     metadata, occurred_at, recorded_at)
            SELECT u.i, u.s,
                   coalesce(t.version, 0) + row_number() OVER (PARTITION BY u.s ORDER BY u.n),
                   type_, schema_version_, u.d, u.m, coalesce(u.o, stamp), stamp
            FROM u JOIN t ON t.s = u.s
            WHERE NOT EXISTS (SELECT FROM stale)
            ORDER BY u.n
            RETURNING e.event_id, e.position, e.version, e.recorded_at
        ), note AS (
            SELECT pg_notify(channel, max(ins.position)::text) FROM ins HAVING count(*) > 0
        )
        SELECT 'stale', NULL::uuid, stale.s::text, NULL::bigint, stale.version, stale.recorded_at
        FROM stale
        UNION ALL
        SELECT 'recorded', ins.event_id, NULL::text, ins.position, ins.version, ins.recorded_at
        FROM ins LEFT JOIN note ON true;
END
$fn$
