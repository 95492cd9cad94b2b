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
