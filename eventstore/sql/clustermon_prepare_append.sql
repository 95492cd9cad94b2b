-- PostgreSQL's append of 32 events or more (eventstore/postgres.py): the lock, the checks and
-- the positions reserved here, then the rows go by binary COPY in the same transaction.
-- Last changed by migration 0014 (migrations/versions/0014_archived_tails.py; 0006_leaner_append_one.py
-- made it lean, the reasons shared by every append function are in 0001_events.py).
CREATE OR REPLACE FUNCTION clustermon_prepare_append(
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
    seq regclass := pg_get_serial_sequence('events', 'position');
BEGIN
    IF serialize THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    END IF;
    dups := ARRAY(SELECT e.event_id FROM events e WHERE e.event_id = ANY(ids));
    SELECT array_agg(f.s),
           array_agg(coalesce((SELECT max(e.version) FROM events e WHERE e.stream = f.s),
                              (SELECT max(a.version) FROM archived_tails a WHERE a.stream = f.s),
                              0))
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
                         coalesce((SELECT max(e.version) FROM events e WHERE e.stream = u.s),
                                  (SELECT max(a.version) FROM archived_tails a
                                   WHERE a.stream = u.s),
                                  0) AS cur
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
    positions := ARRAY(SELECT nextval(seq) FROM generate_series(1, fresh) ORDER BY 1);
    PERFORM pg_notify(channel, positions[fresh]::text);
END
$fn$
