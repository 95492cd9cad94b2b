"""Rebuild speed: `rebuild` (re-fold from zero + atomic swap into the read tables) of 1M
heartbeats over 1,000 servers, beside a bare read-and-fold of the same rows, on PostgreSQL.

    .venv/bin/python -m bench.rebuild [--events 1000000] [--rounds 3]

The log is generated with COPY into a scratch database (beside CLUSTERMON_BENCH_POSTGRES_URL).
Baseline, in the same run and taking turns with the rebuild: raw psycopg pages of the same rows
(10,000 per query, as the store reads), the store's own row decoder, and the same fold — no
SQLAlchemy, no progress, no write. The ratio rebuild/baseline is the figure of merit
(target >= 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from bench.common import libpq, scratch_database
from bench.view_at import copy_heartbeats
from domain.state import ClusterState, apply
from eventstore import create_engine, open_store
from eventstore.decoding import recorded as decode_row  # the store's row decoder
from projections.readmodel.current import current_state
from projections.readmodel.rebuild import rebuild

PAGE = 10_000
SELECT = (
    "SELECT position, event_id, stream, version, type, schema_version, data, metadata,"
    " occurred_at, recorded_at FROM events WHERE position > %s ORDER BY position LIMIT %s"
)


def bare_read_and_fold(url: str) -> tuple[int, ClusterState]:
    """Raw psycopg pages + the store's own row decoder + the fold: nothing else."""
    state, count, after = ClusterState(), 0, 0
    # The store's session settings (eventstore.db: time zone UTC), so both convert alike.
    with psycopg.connect(libpq(url), options="-c timezone=UTC") as conn:
        while True:
            rows = conn.execute(SELECT, (after, PAGE)).fetchall()
            for row in rows:
                apply(state, decode_row(row))
            count += len(rows)
            if len(rows) < PAGE:
                return count, state
            after = rows[-1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as url:
        seconds = copy_heartbeats(url, args.events, servers=1_000)
        print(
            f"generated {args.events:,} heartbeats over 1,000 servers with COPY in {seconds:.0f} s"
        )
        engine = create_engine(url)
        store = open_store(engine)
        base_rates, rebuild_rates = [], []
        for round_ in range(args.rounds):
            started = time.perf_counter()
            count, folded = bare_read_and_fold(url)
            base_rates.append(count / (time.perf_counter() - started))
            started = time.perf_counter()
            rebuilt = rebuild(store)
            rebuild_rates.append(rebuilt / (time.perf_counter() - started))
            print(
                f"round {round_ + 1}: baseline {base_rates[-1]:,.0f} ev/s,"
                f" rebuild {rebuild_rates[-1]:,.0f} ev/s"
            )
            assert rebuilt == count == args.events
        assert current_state(engine) == folded  # the swapped-in tables hold the same fold
        base, rate = statistics.median(base_rates), statistics.median(rebuild_rates)
        print(f"rebuild from zero of {args.events:,} events (PostgreSQL), median of {args.rounds}:")
        print(f"  bare read-and-fold baseline: {base:,.0f} events/s")
        print(
            f"  rebuild (fold + swap):       {rate:,.0f} events/s  -> {rate / base:.2f}x baseline"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
