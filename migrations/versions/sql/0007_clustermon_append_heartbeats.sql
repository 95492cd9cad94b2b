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
