"""Time travel speed: `view_at(t)` at random times in a large log, on PostgreSQL.

    .venv/bin/python -m bench.view_at [--events 10000000] [--samples 300] [--every 500]

A scratch database (beside CLUSTERMON_BENCH_POSTGRES_URL) is filled with COPY: heartbeats of
1,000 servers (web + service), 100 per group commit (one recorded_at per 100 events, one
second apart), with a status change now and then. Snapshots are then written at the cadence
`--every` with `take_snapshot` (what `clustermon snapshot` does), and `view_at(at=t)` is timed
at uniformly random t across the log: median and p99. The baseline, in the same run, is the
full fold from zero up to one random t (what time travel would cost without snapshots).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta

import psycopg
import sqlalchemy as sa

from bench.common import T0, libpq, scratch_database
from domain.state import fold
from eventstore import create_engine, open_store
from projections.readmodel import snapshots
from projections.readmodel.timetravel import view_at

SERVERS = 1_000
PER_COMMIT = 100
KEY = "3f" * 32
COPY = (
    "COPY events (event_id, stream, version, type, schema_version, data, metadata,"
    " occurred_at, recorded_at) FROM STDIN"
)


def _row(i: int, run: int, servers: int = SERVERS) -> str:
    """The i-th event as a COPY text line: stream i % (2 x servers), versions per stream."""
    streams = servers * 2
    server = f"srv-{(i % streams) // 2:04d}"
    component = "web" if i % 2 == 0 else "service"
    at = (T0 + timedelta(seconds=i // PER_COMMIT)).isoformat()
    status = "warning" if i % 9973 == 0 else "ok"
    data = (
        f'{{"server":"{server}","component":"{component}","sent_at":"{at}",'
        f'"status":"{status}","verification":"verified","os":"Ubuntu","os_version":"24.04",'
        f'"ip":"10.{(i % streams) // 250}.0.{(i % streams) % 250 + 1}","product":"ProGet",'
        f'"product_version":"2025.10","encryption_key_fingerprint":"{KEY}","message":null}}'
    )
    return (
        f"{uuid.UUID(int=(run << 64) | i)}\t{server}/{component}\t{i // streams + 1}\t"
        f'HeartbeatRecorded\t2\t{data}\t{{"actor":"agent"}}\t{at}\t{at}\n'
    )


def copy_heartbeats(url: str, count: int, servers: int = SERVERS, chunk: int = 200_000) -> float:
    """Fill the events table with `count` heartbeats by COPY; returns the seconds it took."""
    started = time.perf_counter()
    run = random.getrandbits(32)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for lo in range(0, count, chunk):
            hi = min(lo + chunk, count)
            text = "".join(_row(i, run, servers) for i in range(lo, hi))
            with conn.cursor() as cur, cur.copy(COPY) as copy:
                copy.write(text)
            rate = hi / (time.perf_counter() - started)
            print(f"\rCOPY {hi:,}/{count:,} ({rate:,.0f} rows/s)", end="", file=sys.stderr)
        conn.execute("VACUUM ANALYZE events")
    print(file=sys.stderr)
    return time.perf_counter() - started


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--every", type=int, default=snapshots.EVERY_EVENTS)
    args = parser.parse_args()

    with scratch_database() as url:
        seconds = copy_heartbeats(url, args.events)
        print(f"generated {args.events:,} events with COPY in {seconds:.0f} s")
        engine = create_engine(url)
        store = open_store(engine)
        started = time.perf_counter()
        done = [0]

        def progress(n):
            done[0] += n
            print(f"\rsnapshots: folded {done[0]:,}", end="", file=sys.stderr)

        snapshots.take_snapshot(store, every_events=args.every, progress=progress)
        print(file=sys.stderr)
        with engine.connect() as conn:
            count, size = conn.execute(
                sa.text("SELECT count(*), avg(octet_length(state)) FROM projection_snapshots")
            ).one()
        print(
            f"{count:,} snapshots (every {args.every:,} events, {size / 1024:,.0f} KiB each"
            f" compressed) written in {time.perf_counter() - started:.0f} s"
        )

        end = T0 + timedelta(seconds=(args.events - 1) // PER_COMMIT)
        # From the first moment every server has reported (2 components each), so each view
        # holds all of them whatever --events is.
        full = T0 + timedelta(seconds=2 * SERVERS // PER_COMMIT)
        rng = random.Random(7)
        times = [full + (end - full) * rng.random() for _ in range(args.samples)]
        view_at(store, at=times[0])  # warm the pool and imports
        latencies, load = [], os.getloadavg()[0]
        for t in times:
            started = time.perf_counter()
            # Not kept: the API serializes the view and drops it before the next request.
            count = view_at(store, at=t)["server_count"]
            latencies.append((time.perf_counter() - started) * 1000)
            assert count == SERVERS
        load = (load + os.getloadavg()[0]) / 2
        median, p99 = statistics.median(latencies), percentile(latencies, 99)

        t = times[len(times) // 2]
        started = time.perf_counter()
        full = fold(e for e in store.iter_all() if e.recorded_at <= t)
        baseline = time.perf_counter() - started
        print(
            f"view_at(t), {args.samples} random t over {args.events:,} events (PostgreSQL,"
            f" load average ~{load:.1f} on {os.cpu_count()} CPUs while sampling):"
        )
        print(f"  median {median:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
        print(
            f"  baseline full fold from zero to one t (position {full.position:,}):"
            f" {baseline * 1000:,.0f} ms -> p99 is {baseline * 1000 / p99:,.0f}x faster"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
