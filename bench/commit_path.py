"""The cost of one heartbeat group's commit, by group size: client CPU and PostgreSQL CPU.

    .venv/bin/python -m bench.commit_path [--sizes 1,4,9,16] [--seconds 3] [--rounds 2] [--gevent]

Calls `ClusterCommands.record_heartbeats` (what the group committer calls for each group) in a
loop from one thread, on a scratch PostgreSQL database whose components are all current (the
one-round-trip path), with groups of each size in turn. Prints per call the wall time, the CPU
of this thread (building the group, the driver, the system calls) and the CPU of the database's
backends (from /proc), and the same per heartbeat. Fitting cost = a + b x size to two sizes
gives the fixed cost of a group (a) against the cost of each heartbeat in it (b). With
--gevent the process is monkey-patched first, as `serve`'s workers are on PostgreSQL (psycopg
then waits through gevent instead of its C wait function).
"""

from __future__ import annotations

import sys

if "--gevent" in sys.argv:  # before psycopg is imported: it picks its wait function then
    from gevent import monkey

    monkey.patch_all()

import argparse
import time

from bench.common import cpu_seconds, database_backends, heartbeat, scratch_database
from eventstore import create_engine, open_store
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent

META = {"actor": "agent", "source": "10.0.0.1"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,9,16")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gevent", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'gevent' if args.gevent else 'threads'}, {args.seconds:g} s per size")
    with scratch_database() as url:
        database = url.rsplit("/", 1)[1]
        commands = ClusterCommands(open_store(create_engine(url)))
        # Every component has a heartbeat: the groups take the one-round-trip path.
        commands.record_heartbeats([NewEvent(heartbeat(i), metadata=META) for i in range(1000)])
        n = 0
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}")
            for size in sizes:
                calls = 0
                pg, cpu = cpu_seconds(database_backends(database)), time.thread_time()
                started = time.perf_counter()
                while time.perf_counter() - started < args.seconds:
                    group = [NewEvent(heartbeat(n + i), metadata=META) for i in range(size)]
                    commands.record_heartbeats(group, maybe_duplicates=())
                    n += size
                    calls += 1
                wall = (time.perf_counter() - started) / calls * 1e6
                cpu = (time.thread_time() - cpu) / calls * 1e6
                pg = (cpu_seconds(database_backends(database)) - pg) / calls * 1e6
                print(
                    f"  group of {size:2d}: per call {wall:5.0f} us wall, client {cpu:4.0f} us,"
                    f" PostgreSQL {pg:4.0f} us CPU; per heartbeat client {cpu / size:4.0f} us,"
                    f" PostgreSQL {pg / size:4.0f} us",
                    flush=True,
                )


if __name__ == "__main__":
    main()
