"""Bytes per heartbeat event in the database, and what a month of them costs.

    .venv/bin/python -m bench.retention_size [--events 200000] [--servers 100]

Appends `--events` realistic heartbeats (bench/common.py: ~350 bytes of JSON, the agent's
metadata) for `--servers` servers with two components, one tick of every component every 30 s
of the store's clock, into a scratch PostgreSQL database (CLUSTERMON_BENCH_POSTGRES_URL, dropped at
the end) and a scratch SQLite file. Prints the bytes per event of the events table, split into
table (heap), indexes and TOAST (PostgreSQL: every partition, `pg_partition_tree`; SQLite: `dbstat`
when the library has it, else the file's page_count * page_size), measured as the growth over
the empty, migrated database; then GB per month for 100 and 1,000 servers (2 components, 30 s).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import migrations
from bench.common import T0, heartbeat, scratch_database
from eventstore import create_engine, open_store
from eventstore.store import NewEvent

HEARTBEAT_SECONDS = 30
COMPONENTS = 2
SECONDS_PER_MONTH = 30 * 86_400
META = {"actor": "agent", "source": "10.0.0.1"}


def events_per_month(servers: int) -> int:
    return servers * COMPONENTS * SECONDS_PER_MONTH // HEARTBEAT_SECONDS


def fill(url: str, events: int, servers: int) -> float:
    """Append the heartbeats one tick (every component once) per append; returns seconds."""
    engine = create_engine(url)
    now = [T0]
    store = open_store(engine, lambda: now[0])
    per_tick = servers * COMPONENTS
    started = time.perf_counter()
    for start in range(0, events, per_tick):
        count = min(per_tick, events - start)
        store.append(
            [NewEvent(heartbeat(i % per_tick, now[0]), metadata=META) for i in range(count)]
        )
        now[0] += timedelta(seconds=HEARTBEAT_SECONDS)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


# --- PostgreSQL -------------------------------------------------------------------------------

_PG_SIZES = """
SELECT coalesce(sum(pg_relation_size(relid)), 0)::bigint,
       coalesce(sum(pg_indexes_size(relid)), 0)::bigint,
       coalesce(sum(pg_total_relation_size(relid) - pg_relation_size(relid)
                    - pg_indexes_size(relid)), 0)::bigint
FROM pg_partition_tree('public.events'::regclass)
"""


def pg_sizes(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")
        heap, indexes, toast = conn.exec_driver_sql(_PG_SIZES).one()
    engine.dispose()
    return heap, indexes, toast


def measure_postgresql(events: int, servers: int) -> tuple[tuple[int, int, int], float]:
    with scratch_database() as url:
        empty = pg_sizes(url)
        seconds = fill(url, events, servers)
        full = pg_sizes(url)
    return tuple(f - e for f, e in zip(full, empty, strict=True)), seconds  # type: ignore[return-value]


# --- SQLite -----------------------------------------------------------------------------------


def sqlite_sizes(path: Path) -> tuple[int, int, int]:
    """(table, indexes, 0) bytes of `events` (dbstat), or (whole file, 0, 0) without dbstat."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            rows = conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name = 'events'"
                " OR name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'events'"
                " AND type = 'index') GROUP BY name"
            ).fetchall()
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            pages, size = (
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size")
            )
            return pages * size, 0, 0
    table = sum(size for name, size in rows if name == "events")
    return table, sum(size for name, size in rows if name != "events"), 0


def measure_sqlite(events: int, servers: int) -> tuple[tuple[int, int, int], float]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        migrations.upgrade(f"sqlite:///{path}")
        empty = sqlite_sizes(path)
        seconds = fill(f"sqlite:///{path}", events, servers)
        full = sqlite_sizes(path)
    return tuple(f - e for f, e in zip(full, empty, strict=True)), seconds  # type: ignore[return-value]


def report(name: str, sizes: tuple[int, int, int], events: int, seconds: float) -> None:
    heap, indexes, toast = (part / events for part in sizes)
    total = heap + indexes + toast
    print(
        f"{name:10s} {total:6.0f} bytes/event (table {heap:.0f} + indexes {indexes:.0f}"
        f" + TOAST {toast:.0f}); {events:,} events appended in {seconds:.1f} s"
    )
    for servers in (100, 1_000):
        month = events_per_month(servers)
        print(
            f"{'':10s} {servers:5,} servers: {month / 1e6:6.1f} M events/month,"
            f" {month * total / 1e9:7.1f} GB/month, {12 * month * total / 1e9:8.1f} GB/year"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--servers", type=int, default=100)
    args = parser.parse_args()
    sizes, seconds = measure_postgresql(args.events, args.servers)
    report("PostgreSQL", sizes, args.events, seconds)
    sizes, seconds = measure_sqlite(args.events, args.servers)
    report("SQLite", sizes, args.events, seconds)


if __name__ == "__main__":
    main()
