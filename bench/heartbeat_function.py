"""PostgreSQL's CPU per heartbeat in `clustermon_append_heartbeats`: today's function against
migration 0007's, on the same database, taking turns.

    .venv/bin/python -m bench.heartbeat_function [--sizes 1,4,9,100,500] [--rounds 6]

On a scratch database migrated to the head (today's function: eventstore/sql/), 0007's version
of the function (migrations/versions/sql/) is created beside today's under another name;
`ClusterCommands.record_heartbeats` then appends groups of each size (1,000 components, all
current: the one-call path) through each function in turn, one second at a time, and the CPU of
the database's backends (from /proc) is divided by the heartbeats appended. The scratch database
commits without waiting for the WAL flush, which both versions would wait for alike: that leaves
the functions' own work to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eventstore.postgres_heartbeats as heartbeats_module
import migrations
from bench.common import cpu_seconds, database_backends, heartbeat, libpq, scratch_database
from eventstore import create_engine, open_store
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent

META = {"actor": "agent", "source": "10.0.0.1"}
FUNCTION, OLD_FUNCTION = "clustermon_append_heartbeats(", "clustermon_append_heartbeats_0007("


def function_of_0007() -> str:
    text = migrations.function_sql("0007", "clustermon_append_heartbeats")  # as 0007 created it
    return text.replace(FUNCTION, OLD_FUNCTION, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,9,100,500")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    today = heartbeats_module._PG_APPEND_HEARTBEATS
    variants = {
        "0007": today.replace(FUNCTION, OLD_FUNCTION),
        "today": today,
    }
    with scratch_database() as url:
        database = url.rsplit("/", 1)[1]
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute(function_of_0007())
            conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
        commands = ClusterCommands(open_store(create_engine(url)))
        commands.record_heartbeats([NewEvent(heartbeat(i), metadata=META) for i in range(1000)])
        n = 1000
        for size in map(int, args.sizes.split(",")):
            spent = {name: [0.0, 0] for name in variants}  # PostgreSQL CPU, heartbeats
            for _ in range(args.rounds):
                for name, sql in variants.items():
                    heartbeats_module._PG_APPEND_HEARTBEATS = sql
                    before, started = cpu_seconds(database_backends(database)), time.monotonic()
                    while time.monotonic() - started < 1.0:
                        group = [NewEvent(heartbeat(n + i), metadata=META) for i in range(size)]
                        assert len(commands.record_heartbeats(group).recorded) == size
                        n += size
                        spent[name][1] += size
                    spent[name][0] += cpu_seconds(database_backends(database)) - before
            heartbeats_module._PG_APPEND_HEARTBEATS = today
            old, new = (spent[name][0] / spent[name][1] * 1e6 for name in variants)
            print(
                f"groups of {size:3d}: PostgreSQL CPU per heartbeat {old:6.1f} us (0007)"
                f" -> {new:6.1f} us (today) = {new / old:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
