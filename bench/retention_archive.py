"""Archive speed and size: N heartbeat events archived to gzip'd JSON Lines and deleted.

    .venv/bin/python -m bench.retention_archive [--events 10000000] [--events-per-file 1000000]

URL: CLUSTERMON_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
A scratch database is filled server-side with the heartbeat mix of bench/replay.py (1,000
streams, the JSON the store itself writes), then `retention.archive.archive` takes every event
but the newest: files, manifest, read-back verification, boundary snapshot, delete (the
snapshots the scheduler keeps, one per 500 events, are taken first, untimed). Printed:
events/s of the whole run (wall clock, and per CPU-second of the archiver: a shared machine's
load shows in the first, not in the second) and of `--verify` alone, the bytes per event in
the database (table, indexes and TOAST of every partition) against the archive's, and the
table's size afterwards.
Target (issue #21): the archive at most 1/10 of the database's bytes for the same events.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from bench.common import T0, libpq, scratch_database
from bench.replay import fill
from eventstore import create_engine, open_store, partitions
from projections.readmodel.snapshots import take_snapshot
from retention.archive import archive
from retention.verify import verify

SIZE = "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events')"


def database_bytes(url: str) -> int:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
        row = conn.execute(SIZE).fetchone()
        assert row is not None
        return int(row[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--events-per-file", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with scratch_database() as url, tempfile.TemporaryDirectory() as folder:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                if partitions.is_partitioned(conn):
                    partitions.cover(conn, 1, args.events + 1)
            fill(url, args.events)
            before_bytes = database_bytes(url)
            store = open_store(engine)
            # The scheduler keeps a snapshot every 500 events; without them the boundary
            # snapshot would fold the whole log, which no deployment with a scheduler does.
            take_snapshot(store)
            # Everything but the newest event (which is never archived).
            boundary = T0 + timedelta(milliseconds=args.events - 1)
            started, cpu = time.perf_counter(), time.process_time()
            result = archive(
                store, boundary, Path(folder) / "a", events_per_file=args.events_per_file
            )
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu
            found = result.manifest
            assert found is not None and found.events == args.events - 1, found
            started = time.perf_counter()
            verify(Path(folder) / "a")
            verify_seconds = time.perf_counter() - started
            archive_bytes = sum(p.stat().st_size for p in (Path(folder) / "a").iterdir())
            after_bytes = database_bytes(url)
        finally:
            engine.dispose()

    n = found.events
    db_per_event = before_bytes / args.events
    archive_per_event = archive_bytes / n
    print(f"archive of {n:,} heartbeat events (PostgreSQL, {len(found.files)} file(s))")
    print(f"  archive run (files, manifest, verify, snapshot, delete): {seconds:.1f} s,")
    print(f"    {n / seconds:,.0f} events/s; the archiver's own CPU: {cpu_seconds:.1f} s,")
    print(f"    {n / cpu_seconds:,.0f} events per CPU-second (the database's work not counted)")
    print(f"  --verify alone: {verify_seconds:.1f} s, {n / verify_seconds:,.0f} events/s")
    print(f"  database: {db_per_event:,.1f} bytes/event ({before_bytes / 2**20:,.1f} MiB)")
    print(f"  archive:  {archive_per_event:,.1f} bytes/event ({archive_bytes / 2**20:,.1f} MiB)")
    ratio = archive_per_event / db_per_event
    verdict = "met" if ratio <= 0.1 else "MISSED"
    print(f"  archive/database: 1/{1 / ratio:.1f} (target <= 1/10: {verdict})")
    print(f"  events table afterwards: {after_bytes / 2**20:,.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
