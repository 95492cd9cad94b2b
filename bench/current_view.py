"""Current view read for 10,000 servers (20,000 components) from the read tables.

    .venv/bin/python -m bench.current_view [--servers 10000] [--samples 200]

A scratch PostgreSQL database gets one heartbeat per component by COPY, the projection runner
catches up (its throughput is printed too), then `current_view(engine, now)` is timed at random
`now` (so staleness varies): warm (the state cached in the process, re-validated with one
checkpoint query per read: what a serving worker does), cold (cache dropped: the full read of
the tables + evaluation) and live (a heartbeat appended and projected before each read, which
then folds it onto its cached state). The table read alone (`readmodel.load_state`) is shown as
the part "from the read tables"; the rest is evaluating the rules for 20,000 components.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

from bench.common import T0, scratch_database
from bench.view_at import copy_heartbeats, percentile
from eventstore import EventStore, NewEvent, create_engine
from eventstore.events import HeartbeatRecorded
from projections import read, readmodel
from projections.runner import ProjectionRunner


def _timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _line(name: str, ms: list[float]) -> str:
    return f"  {name:<38} median {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms"


def shaped_like_the_view(servers: int, now) -> list:
    """Baseline: build a dict of the view's shape and size with constants, no rules: the floor
    of any per-request evaluation that returns a fresh view in Python."""
    last = now - timedelta(seconds=5)
    out = []
    for i in range(servers):
        components = []
        for name in ("service", "web"):
            age = (now - last).total_seconds()
            heartbeat = {
                "last_at": last,
                "age_seconds": round(age, 3),
                "state": "current",
                "stale_since": None,
                "deadline": last,
                "last_position": i,
                "sender_clock_skew_seconds": 0.0,
            }
            components.append(
                {
                    "name": name,
                    "status": "ok",
                    "verification": "verified",
                    "product": "ProGet",
                    "product_version": "2025.10",
                    "message": None,
                    "health": "ok",
                    "reasons": [],
                    "heartbeat": heartbeat,
                }
            )
        out.append(
            {
                "name": f"srv-{i}",
                "os": "Ubuntu",
                "os_version": "24.04",
                "ip": "10.0.0.1",
                "health": "ok",
                "reasons": [],
                "version_in_sync": True,
                "encryption_key_in_sync": True,
                "components": components,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with scratch_database() as url:
        copy_heartbeats(url, args.servers * 2, servers=args.servers)
        engine = create_engine(url)
        runner = ProjectionRunner(EventStore(engine), batch_size=5_000)
        started = time.perf_counter()
        applied = runner.catch_up()
        seconds = time.perf_counter() - started
        print(
            f"runner caught up {applied:,} events in {seconds:.1f} s"
            f" ({applied / seconds:,.0f} ev/s)"
        )

        rng = random.Random(3)

        def now():
            return T0 + timedelta(seconds=rng.uniform(0, 600))

        view = read.current_view(engine, now())
        assert view["server_count"] == args.servers

        def table_read():
            with engine.connect() as conn, conn.begin():
                readmodel.load_state(conn)

        def cold():
            read.clear_cache()
            read.current_view(engine, now())

        table = _timed(table_read, max(10, args.samples // 5))
        colds = _timed(cold, max(10, args.samples // 5))
        read.current_view(engine, now())
        warm = _timed(lambda: read.current_view(engine, now()), args.samples)
        check = _timed(lambda: read._cached_state(engine), args.samples)
        # Live: one heartbeat arrives and is projected before each read, so every read finds a
        # newer checkpoint and folds it onto its cached state (copy-on-write).
        store = EventStore(engine)
        live = []
        for i in range(max(10, args.samples // 5)):
            beat = HeartbeatRecorded(server=f"srv-{i:04d}", component="web", sent_at=T0)
            store.append([NewEvent(beat)])
            runner.catch_up()
            started = time.perf_counter()
            read.current_view(engine, now())
            live.append((time.perf_counter() - started) * 1000)
        floor = _timed(lambda: shaped_like_the_view(args.servers, now()), args.samples // 2)
        print(f"current view of {args.servers:,} servers (PostgreSQL):")
        print(_line("read tables -> state (load_state)", table))
        print(_line("current_view, cold (read + evaluate)", colds))
        print(_line("current_view, warm (check + evaluate)", warm))
        print(_line("warm state check alone (1 query)", check))
        print(_line("after a new event (fold 1 + evaluate)", live))
        print(_line("baseline: same-shape dict, no rules", floor))
        print(f"  warm p99 / baseline p99 = {percentile(warm, 99) / percentile(floor, 99):.1f}x")
        engine.dispose()


if __name__ == "__main__":
    main()
