-- PostgreSQL's append of one event in one round trip (eventstore/postgres.py): the steps of
-- clustermon_append with scalar parameters.
-- Last changed by migration 0014 (migrations/versions/0014_archived_tails.py; 0006_leaner_append_one.py
-- made it lean, the reasons shared by every append function are in 0001_events.py).
CREATE OR REPLACE FUNCTION clustermon_append_one(
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
    IF EXISTS (SELECT FROM events e WHERE e.event_id = id) THEN
        RETURN;  -- a duplicate: no row
    END IF;
    current := coalesce((SELECT max(e.version) FROM events e WHERE e.stream = stream_),
                        (SELECT max(a.version) FROM archived_tails a WHERE a.stream = stream_),
                        0);
    IF expected_version IS NOT NULL AND current <> expected_version THEN
        kind := 'conflict'; stream := stream_; version := current; expected := expected_version;
        RETURN NEXT;
        RETURN;
    END IF;
    stamp := greatest(recorded,
                      (SELECT e.recorded_at FROM events e ORDER BY e.position DESC LIMIT 1));
    INSERT INTO events AS e (event_id, stream, version, type, schema_version, data, metadata,
                             occurred_at, recorded_at)
    VALUES (id, stream_, current + 1, type_, schema_version_, data_, metadata_,
            coalesce(occurred, stamp), stamp)
    RETURNING e.position INTO "position";
    PERFORM pg_notify(channel, "position"::text);
    kind := 'recorded'; event_id := id; version := current + 1; recorded_at := stamp;
    RETURN NEXT;
END
$fn$
