"""A report over a log whose server versions change every batch, before and after issue #17.

    .venv/bin/python -m bench.reports_churn [--servers 50] [--events 100000] [--rounds 3]
    .venv/bin/python -m bench.reports_churn --scaling

Before the fix, the episode pass judged every server's version and key sync again after every
event that could change it, so a report cost O(events x servers) when versions churn. The log
(COPY into a scratch PostgreSQL database, with `bench.report`'s writer) has `--servers` servers
running web and service, all beating every 30 s (one batch); every batch each server reports
the other of two versions, two thirds of them in step and one third out of step, so the majority
(the reference) moves within every batch; every fifth batch one server in ten reports another
encryption key.

Measured, alternating, `--rounds` times each (median printed; "before" once per round, it is
slow), each a whole pass over the log from position 0:
- before: the episode builder of the tree before the fix (`--before`, read with `git show`),
  fed the same `store.iter_all`, then `reports.summarize`; its report is checked equal to the
  new one;
- report: `reports.compute(store, start, end)` (the period starts with the log: no snapshot);
- what-if: `whatif.what_if` with a 600 s timeout (two builders, no sync tracking): the baseline.
`--scaling` instead times before and report once each on logs of 10k, 20k and 40k events, with
a fixed cluster and with the cluster growing with the log (where "before" is quadratic).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import types
from datetime import datetime
from pathlib import Path
from typing import cast

import psycopg

from bench.common import BENCH_URL, libpq, scratch_database
from bench.report import COLUMNS, STEP, T0, Writer, timed
from domain.events import HeartbeatRecorded
from eventstore import EventStore, create_engine, open_store
from projections.audit import reports, whatif

BEFORE = "0019798"  # the last commit with the per-event re-check of every server
VERSIONS = ("2025.9", "2025.10")
KEYS = ("3f" * 32, "4e" * 32)


def generate(url: str, servers: int, events: int) -> tuple[int, datetime]:
    """Write about `events` heartbeats; returns (events written, end of the range)."""
    names = [f"srv-{i:03d}" for i in range(servers)]
    with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
            out = Writer(copy)
            batch = 0
            while out.count < events:
                at = T0 + batch * STEP
                for s, name in enumerate(names):
                    version = VERSIONS[(batch + (s % 3 == 0)) % 2]
                    key = KEYS[s % 10 == 0 and batch % 5 == 0]
                    for component in ("web", "service"):
                        beat = HeartbeatRecorded(
                            server=name,
                            component=component,
                            sent_at=at,
                            os="Ubuntu",
                            os_version="24.04",
                            ip="10.0.0.1",
                            product="ProGet",
                            product_version=version,
                            encryption_key_fingerprint=key,
                        )
                        out.write(beat, at)
                batch += 1
        conn.commit()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    return out.count, T0 + batch * STEP


def load_before(revision: str) -> types.ModuleType:
    """projections/audit/episodes.py as it was at `revision`, as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{revision}:projections/audit/episodes.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("episodes_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:projections/audit/episodes.py", "exec"), module.__dict__)
    return module


def report_before(before: types.ModuleType, store: EventStore, end: datetime) -> dict:
    builder = before.EpisodeBuilder(track_sync=True)
    for recorded in store.iter_all(until=end):
        builder.feed(recorded)
    return reports.summarize(builder.finish(end), T0, end)


def _line(name: str, seconds: list[float], cpu: list[float], count: int, base: float) -> str:
    wall = statistics.median(seconds)
    return (
        f"  {name:<8} {wall:7.2f} s {count / wall:>10,.0f} ev/s {wall / base:6.2f}x"
        f"   cpu {statistics.median(cpu):6.2f} s"
    )


def measure(servers: int, events: int, rounds: int, before: types.ModuleType) -> None:
    with scratch_database(BENCH_URL) as url:
        count, end = generate(url, servers, events)
        engine = create_engine(url)
        store = open_store(engine)
        runs = {
            "before": lambda: report_before(before, store, end),
            "report": lambda: reports.compute(store, T0, end),
            "what-if": lambda: whatif.what_if(store, T0, end, {"stale_timeout_seconds": 600}),
        }
        reports.compute(store, T0, end)  # warm-up: pool, caches, page cache; not timed
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        results = {}
        for round_ in range(rounds):
            for name, run in runs.items():  # alternating: every variant sees the same weather
                seconds, cpu_seconds, results[name] = timed(run)
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
            print(
                f"  round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in wall.items()),
                file=sys.stderr,
            )
        engine.dispose()
    same = results["before"] == results["report"]
    report = cast(dict, results["report"])
    print(
        f"\n{count:,} events ({servers} servers x 2 components every 30 s, versions changing"
        f" every batch), median of {rounds} (PostgreSQL); ratio against the what-if:"
    )
    base = statistics.median(wall["what-if"])
    for name in runs:
        print(_line(name, wall[name], cpu[name], count, base))
    speedup = statistics.median(wall["before"]) / statistics.median(wall["report"])
    print(
        f"  before / report: {speedup:.1f}x; {len(report['out_of_sync']):,} out-of-sync periods;"
        f" reports identical: {same}"
    )
    if not same:
        raise SystemExit("the reports differ")


def scaling(before: types.ModuleType) -> None:
    print("one pass each (PostgreSQL), from position 0; wall (CPU of this process):")
    print(f"  {'events':>8} {'servers':>8} {'before':>16} {'report':>16} {'before/report':>14}")
    for servers_of in (lambda n: 50, lambda n: n // 400):
        for events in (10_000, 20_000, 40_000):
            servers = servers_of(events)
            count, old, new = _once(servers, events, before)
            print(
                f"  {count:>8,} {servers:>8} {old[0]:7.2f}s ({old[1]:5.2f}s)"
                f" {new[0]:7.2f}s ({new[1]:5.2f}s) {old[0] / new[0]:13.1f}x"
            )


def _once(
    servers: int, events: int, before: types.ModuleType
) -> tuple[int, tuple[float, float], tuple[float, float]]:
    """(events, before, after) of one report over a new log: (wall, CPU) seconds each."""
    with scratch_database(BENCH_URL) as url:
        count, end = generate(url, servers, events)
        engine = create_engine(url)
        store = open_store(engine)
        reports.compute(store, T0, end)  # warm-up: pool, caches, page cache; not timed
        old_wall, old_cpu, old_report = timed(lambda: report_before(before, store, end))
        new_wall, new_cpu, new_report = timed(lambda: reports.compute(store, T0, end))
        engine.dispose()
    if old_report != new_report:
        raise SystemExit(f"the reports differ ({events} events, {servers} servers)")
    return count, (old_wall, old_cpu), (new_wall, new_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="git revision of the old builder")
    parser.add_argument("--scaling", action="store_true", help="10k/20k/40k events instead")
    args = parser.parse_args()
    before = load_before(args.before)
    if args.scaling:
        scaling(before)
    else:
        measure(args.servers, args.events, args.rounds, before)


if __name__ == "__main__":
    main()
