CREATE OR REPLACE FUNCTION clustermon_append(
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
                SELECT coalesce((SELECT max(e.version) FROM events e WHERE e.stream = u.s),
                                (SELECT max(a.version) FROM archived_tails a WHERE a.stream = u.s),
                                0) AS v
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
                   coalesce((SELECT max(e2.version) FROM events e2 WHERE e2.stream = u.s),
                            (SELECT max(a.version) FROM archived_tails a WHERE a.stream = u.s),
                            0)
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
