"""Deleting archived events on PostgreSQL: dropping whole partitions vs a DELETE.

    .venv/bin/python -m bench.retention_drop [--events 3000000] [--archive 2000000]

Two scratch databases beside CLUSTERMON_BENCH_POSTGRES_URL (dropped at the end), each filled
server-side with `--events` heartbeats of the bench's JSON (bench/common.py), then the oldest
`--archive` of them deleted the way retention does it (eventstore/retention.delete_range):

- "partitions": the schema of migration 0012, the range ending on a partition boundary, so the
  delete is DROP TABLE of whole partitions;
- "DELETE": the schema of migration 0011 (one table), so the same delete is a DELETE.

Printed for each: the delete's time and the events table's total size (table, indexes, TOAST, all
partitions) before, right after, and after a plain VACUUM (what autovacuum would get back: a
DELETE leaves the table's file as large as before, its space reusable only by later rows).
A month of heartbeats is 17.3 M events for 100 servers; the default is a scaled-down run, the
time of a DELETE grows with the rows deleted, a DROP's does not.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import orjson

import migrations
from bench.common import T0, heartbeat, scratch_database
from eventstore import create_engine, partitions, retention
from eventstore.tables import event_archives

_FILL = """
INSERT INTO events (event_id, stream, version, type, schema_version, data, metadata,
                    occurred_at, recorded_at)
SELECT gen_random_uuid(), 'srv-' || lpad(((i %% 200) / 2)::text, 3, '0')
           || CASE WHEN i %% 2 = 0 THEN '/web' ELSE '/service' END,
       i / 200 + 1, 'HeartbeatRecorded', 1, %(data)s, %(meta)s,
       %(t0)s::timestamptz + (i / 200) * interval '30 seconds',
       %(t0)s::timestamptz + (i / 200) * interval '30 seconds'
FROM generate_series(%(start)s, %(stop)s) AS i
"""
# Every partition's, or the plain table's (pg_partition_tree lists nothing for a plain table).
_SIZE = (
    "SELECT coalesce((SELECT sum(pg_total_relation_size(relid))"
    " FROM pg_partition_tree('public.events'::regclass)),"
    " pg_total_relation_size('public.events'))::bigint"
)
_CHUNK = 500_000


def fill(url: str, events: int) -> None:
    data = orjson.dumps(heartbeat(0)).decode()
    meta = orjson.dumps({"actor": "agent", "source": "10.0.0.1"}).decode()
    engine = create_engine(url, lock_timeout=0)
    with engine.begin() as conn:
        if partitions.is_partitioned(conn):
            partitions.cover(conn, 1, events + partitions.PARTITION_SIZE)
    for start in range(0, events, _CHUNK):
        stop = min(start + _CHUNK, events) - 1
        with engine.begin() as conn:
            conn.exec_driver_sql(
                _FILL, {"data": data, "meta": meta, "t0": T0, "start": start, "stop": stop}
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE events")
    engine.dispose()


def size(url: str, vacuum: bool = False) -> int:
    engine = create_engine(url, lock_timeout=0)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if vacuum:
            conn.exec_driver_sql("VACUUM events")
        total = conn.exec_driver_sql(_SIZE).scalar_one()
    engine.dispose()
    return total


def run(name: str, url: str, events: int, archive: int) -> None:
    fill(url, events)
    before = size(url)
    engine = create_engine(url, lock_timeout=0)
    boundary = T0 + timedelta(seconds=30 * (archive // 200))
    wanted = retention.archivable_range(engine, boundary, whole_partitions=True)
    assert wanted is not None
    first, last, count = wanted
    started = time.perf_counter()
    retention.delete_range(
        engine, first, last, count, {"before": boundary, "path": "-", "sha256": "0" * 64}
    )
    seconds = time.perf_counter() - started
    engine.dispose()
    after, vacuumed = size(url), size(url, vacuum=True)
    print(
        f"{name:10s} deleted {count:,} of {events:,} events in {seconds:6.2f} s"
        f" ({count / seconds / 1e6:5.2f} M events/s); size {before / 1e6:,.0f} MB before,"
        f" {after / 1e6:,.0f} MB after, {vacuumed / 1e6:,.0f} MB after VACUUM"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--archive", type=int, default=2_000_000)
    parser.add_argument("--only", choices=["partitions", "DELETE"], help="run one variant")
    args = parser.parse_args()
    if args.only != "DELETE":
        with scratch_database() as url:
            run("partitions", url, args.events, args.archive)
    if args.only == "partitions":
        return
    with scratch_database(migrate=False) as url:
        migrations.upgrade(url, "0011")
        engine = create_engine(url)
        event_archives.create(engine)  # where delete_range records the archive
        engine.dispose()
        run("DELETE", url, args.events, args.archive)


if __name__ == "__main__":
    main()
