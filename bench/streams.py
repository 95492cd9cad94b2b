"""What idle dashboards cost the database: transactions/s with N live streams open and no events.

    .venv/bin/python -m bench.streams [--streams 100] [--seconds 10] [--compare REV]

`clustermon serve` on a scratch PostgreSQL database (gevent workers), N SSE streams held open
on /api/v1/events/stream, nothing appended; prints the transactions per second the database
counts (commits + rollbacks, from pg_stat_database) over --seconds. With --compare, the tree of
commit REV is measured the same way first.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import time
from pathlib import Path

import psycopg

from bench.api import ROOT, checkout, serving
from bench.common import BENCH_URL, libpq


def transactions(database: str) -> int:
    with psycopg.connect(libpq(BENCH_URL), autocommit=True) as conn:
        return conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database,),
        ).fetchone()[0]


def measure(code: Path, streams: int, seconds: int) -> float:
    port = 18500 + os.getpid() % 500
    with serving(str(code), code, port, {}) as server:
        open_streams = []
        try:
            for _ in range(streams):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request(
                    "GET",
                    "/api/v1/events/stream",
                    headers={"Authorization": f"Bearer {server.viewer}"},
                )
                response = connection.getresponse()
                if response.status != 200:
                    raise SystemExit(f"stream refused: {response.status}")
                open_streams.append(connection)
            time.sleep(2)  # let every stream reach its idle wait
            before, started = transactions(server.database), time.monotonic()
            time.sleep(seconds)
            return (transactions(server.database) - before) / (time.monotonic() - started)
        finally:
            for connection in open_streams:  # serve waits for open streams when it stops
                connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--compare", metavar="REV")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        trees = [("working tree", ROOT)]
        if args.compare:
            trees.insert(0, (args.compare, stack.enter_context(checkout(args.compare))))
        for name, code in trees:
            rate = measure(code, args.streams, args.seconds)
            print(f"{name}: {args.streams} idle streams, {rate:6.1f} database transactions/s")


if __name__ == "__main__":
    main()
