"""Time to compute an availability report beside a bare replay of the same range.

    .venv/bin/python -m bench.report [--servers 100] [--days 1] [--rounds 3]

The issue's scenario is 30 days of 100 servers heartbeating every 30 s (~17M events). That takes
far too long to generate and replay on the shared 2-core machine, so the default is the same
cluster over 1 day (~576k events); `--days 30` runs the full size. The history is written
with COPY straight into a scratch PostgreSQL database (created beside
CLUSTERMON_BENCH_POSTGRES_URL and dropped at the end), with the rows the store itself would
write: every server runs web and service, each beats every 30 s; each server's service goes
silent once a day for 2-20 minutes (timeout recorded 300 s after its last beat, recovery and
heartbeat when it comes back), every service goes silent together for 10 minutes once a day (a
cluster outage), and one server reports another version for 3 hours a day.

Measured, alternating, `--rounds` times each (median printed):
- bare replay: `fold(store.iter_all(until=end))`, the shared fold over the whole range;
- report: `reports.compute(store, start, end)` (the same read, plus episodes, failovers,
  cluster outages and sync periods, then the summary);
- what-if: `whatif.what_if(...)` with a 600 s timeout (two builders fed by one read).
Then snapshots are written (the scheduler's default cadence, every 500 events) and the report
over the last `--tail-hours` is timed beside the time travel of the same range (the newest
snapshot before it decoded, the range folded): the case of a daily report on a long log.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from bench.common import BENCH_URL, libpq, scratch_database
from domain.events import ComponentRecovered, ComponentTimedOut, HeartbeatRecorded
from domain.state import fold
from eventstore import EventStore, create_engine, open_store
from projections.audit import reports, whatif
from projections.readmodel import snapshots
from projections.readmodel.snapshots import take_snapshot

T0 = datetime(2026, 10, 1, tzinfo=UTC)
STEP = timedelta(seconds=30)
TIMEOUT = timedelta(seconds=300)
COLUMNS = (
    "event_id, stream, version, type, schema_version, data, metadata, occurred_at, recorded_at"
)
META = orjson.dumps({"actor": "agent", "source": "10.0.0.1"}).decode()


class Writer:
    def __init__(self, copy):
        self.copy = copy
        self.versions: dict[str, int] = {}
        self.count = 0

    def write(self, event, at: datetime) -> None:
        stream = event.stream
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        self.copy.write_row(
            (
                uuid.uuid4(),
                stream,
                version,
                event.type,
                event.schema_version,
                orjson.dumps(event).decode(),
                META,
                at,
                at,
            )
        )
        self.count += 1


def _beat(server: str, component: str, at: datetime, version: str) -> HeartbeatRecorded:
    return HeartbeatRecorded(
        server=server,
        component=component,
        sent_at=at,
        os="Ubuntu",
        os_version="24.04",
        ip="10.0.0.1",
        product="ProGet",
        product_version=version,
        encryption_key_fingerprint="3f" * 32,
    )


def generate(url: str, servers: int, days: int) -> tuple[int, datetime]:
    """Write the history; returns (events, end of the range)."""
    rng = random.Random(6)
    steps_per_day = int(timedelta(days=1) / STEP)
    names = [f"srv-{i:03d}" for i in range(servers)]
    # per server and day: the step its service goes silent and for how many steps
    silences = {
        (s, d): (rng.randrange(steps_per_day - 60), rng.randrange(4, 41))
        for s in range(servers)
        for d in range(days)
    }
    cluster_silence = (steps_per_day // 2, 20)  # 10 minutes at noon, every day
    last: dict[str, datetime] = {}
    timed_out: dict[str, datetime] = {}
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
            out = Writer(copy)
            for step in range(days * steps_per_day):
                day, in_day = divmod(step, steps_per_day)
                at = T0 + step * STEP
                cluster_down = 0 <= in_day - cluster_silence[0] < cluster_silence[1]
                for s, name in enumerate(names):
                    version = "2025.9" if s == 0 and 600 <= in_day < 960 else "2025.10"
                    out.write(_beat(name, "web", at, version), at)
                    start, length = silences[(s, day)]
                    silent = cluster_down or 0 <= in_day - start < length
                    if silent:
                        expiry = last[name] + TIMEOUT if name in last else None
                        if expiry is not None and name not in timed_out and at > expiry:
                            out.write(
                                ComponentTimedOut(
                                    server=name,
                                    component="service",
                                    expired_at=expiry,
                                    detected_at=at,
                                    timeout_seconds=300,
                                    configuration_version=0,
                                    last_heartbeat_position=None,
                                    detector="bench",
                                ),
                                at,
                            )
                            timed_out[name] = expiry
                        continue
                    if name in timed_out:
                        since = timed_out.pop(name)
                        out.write(
                            ComponentRecovered(
                                server=name,
                                component="service",
                                stale_since=since,
                                recovered_at=at,
                                outage_seconds=(at - since).total_seconds(),
                            ),
                            at,
                        )
                    out.write(_beat(name, "service", at, version), at)
                    last[name] = at
                if in_day == steps_per_day - 1:
                    print(f"  day {day + 1}/{days}: {out.count:,} events", file=sys.stderr)
        conn.commit()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    return out.count, T0 + days * timedelta(days=1)


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, value). The machine is shared: wall time
    swings with the other work on it, the CPU time of this process much less (the database
    server's own work is only in the wall time)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def _replay_from_snapshot(store: EventStore, before: int, end: datetime):
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=before)
    state = snapshots.decode(snap.state)
    return fold(store.iter_all(after=state.position, until=end), state)


def _table(runs, wall, cpu, count, baseline) -> None:
    base_wall = statistics.median(wall[baseline])
    base_cpu = statistics.median(cpu[baseline])
    print(f"  {'':<12} {'wall':>8} {'events/s':>10} {'ratio':>6}   {'cpu':>7} {'ratio':>6}")
    for name in runs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"  {name:<12} {w:7.2f}s {count / w:>10,.0f} {w / base_wall:5.2f}x"
            f"   {c:6.2f}s {c / base_cpu:5.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tail-hours", type=int, default=3)
    parser.add_argument(
        "--tail-only", action="store_true", help="skip the whole-range runs (long logs)"
    )
    args = parser.parse_args()

    with scratch_database(BENCH_URL) as url:
        started = time.perf_counter()
        count, end = generate(url, args.servers, args.days)
        print(
            f"generated {count:,} events ({args.servers} servers x 2 components, every 30 s,"
            f" {args.days} days) in {time.perf_counter() - started:.1f} s"
        )
        engine = create_engine(url)
        store = open_store(engine)
        runs = {
            "bare replay": lambda: fold(store.iter_all(until=end)),
            "report": lambda: reports.compute(store, T0, end),
            "what-if": lambda: whatif.what_if(store, T0, end, {"stale_timeout_seconds": 600}),
        }
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        results = {}
        if not args.tail_only:
            fold(store.iter_all(until=end))  # warm-up: pool, caches, page cache; not timed
        for round_ in range(0 if args.tail_only else args.rounds):
            for name, run in runs.items():  # alternating: every variant sees the same weather
                seconds, cpu_seconds, results[name] = timed(run)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
            print(
                f"  round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in wall.items()),
                file=sys.stderr,
            )

        # The same cluster's report over the last hours, from a snapshot: what the daily job does
        # on a long log. The baseline is the time travel of the same range: the same snapshot
        # decoded and the tail folded.
        snapshot_seconds, _, _ = timed(lambda: take_snapshot(store))
        since = end - timedelta(hours=args.tail_hours)
        first = store.last_position_at(since, inclusive=False)
        tail_count = store.head_position() - first
        tail_runs = {
            "bare replay": lambda: _replay_from_snapshot(store, first, end),
            "report": lambda: reports.compute(store, since, end),
        }
        tail_wall: dict[str, list[float]] = {name: [] for name in tail_runs}
        tail_cpu: dict[str, list[float]] = {name: [] for name in tail_runs}
        for _round in range(args.rounds):
            for name, run in tail_runs.items():
                seconds, cpu_seconds, results[f"tail {name}"] = timed(run)
                tail_wall[name].append(seconds)
                tail_cpu[name].append(cpu_seconds)
        engine.dispose()

    if not args.tail_only:
        print(f"\nwhole range, median of {args.rounds} rounds over {count:,} events (PostgreSQL):")
        _table(runs, wall, cpu, count, "bare replay")
    print(
        f"\nlast {args.tail_hours} h of the range ({tail_count:,} events), starting from the"
        f" newest snapshot before it (snapshots written in {snapshot_seconds:.1f} s):"
    )
    _table(tail_runs, tail_wall, tail_cpu, tail_count, "bare replay")
    report = results["tail report" if args.tail_only else "report"]
    cluster = report["cluster"]
    components = report["components"]
    print(
        f"report: {len(components)} components, {sum(c['outages'] for c in components)} outages,"
        f" {cluster['failovers']} failovers, {cluster['cluster_outages']} cluster outages,"
        f" {len(report['out_of_sync'])} out-of-sync periods"
    )


if __name__ == "__main__":
    main()
