"""Append throughput of the event store on PostgreSQL beside raw psycopg baselines.

    .venv/bin/python -m bench.append [--rounds 3] [--scale 1.0]

URL: CLUSTERMON_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Everything runs in a scratch database created next to it and dropped at the end. The store
always runs with its ordering guarantee on (the advisory lock) except on the line marked
"lock off". The baselines write the same rows (pre-built tuples) into a plain table with the
same columns and only a primary key: raw executemany, raw COPY, and one INSERT + COMMIT per row.
The median of the rounds is printed, with each variant's ratio to the scenario's baseline.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import signal
import sys
import time
from collections import defaultdict

import psycopg

from bench.common import (
    PLAIN_TABLE_DDL,
    T0,
    RawRows,
    libpq,
    median_rate,
    new_events,
    scratch_database,
)
from domain.events import HeartbeatRecorded
from eventstore import create_engine, open_store
from eventstore.store import NewEvent

RAW_INSERT = (
    f"INSERT INTO raw_events ({RawRows.COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
RAW_COPY = f"COPY raw_events ({RawRows.COLUMNS}) FROM STDIN"
WRITERS = 4


def truncate(url: str) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("TRUNCATE events, raw_events RESTART IDENTITY")
        conn.execute("VACUUM ANALYZE events")
        conn.execute("VACUUM ANALYZE raw_events")


# --- one process: the variants take turns, slice by slice ------------------------------------
# Other work on the shared machine makes commit latency swing by 10x within seconds, so each
# variant runs a small slice in turn and the time of its slices is summed: every variant sees
# the same weather. Tables are emptied once per scenario and grow evenly.


class StoreVariant:
    def __init__(self, url: str):
        self.engine = create_engine(url)
        self.store = open_store(self.engine)
        self.store.append(new_events(10**9, 1))  # warm the pool and the prepared statement

    def prepare(self, batch: int, batches: int) -> list:
        return [new_events(i * batch, batch) for i in range(batches)]

    def run(self, events) -> None:
        self.store.append(events)

    def close(self) -> None:
        self.engine.dispose()


class RawVariant:
    def __init__(self, url: str, how: str):
        self.conn = psycopg.connect(libpq(url))
        self.cur = self.conn.cursor()
        self.how = how
        self.source = RawRows()

    def prepare(self, batch: int, batches: int) -> list:
        return [self.source.take(batch) for _ in range(batches)]

    def run(self, rows) -> None:
        if self.how == "raw executemany":
            self.cur.executemany(RAW_INSERT, rows)
        elif self.how == "raw COPY":
            with self.cur.copy(RAW_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
        else:  # raw INSERT+COMMIT: one INSERT, then COMMIT
            for row in rows:
                self.cur.execute(RAW_INSERT, row)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def take_turns(url: str, names: list[str], batch: int, batches: int, per_turn: int) -> dict:
    """events/s of each variant: `per_turn` transactions of one variant, then the next one."""
    truncate(url)
    variants = {n: StoreVariant(url) if n == "store" else RawVariant(url, n) for n in names}
    try:
        work = {name: v.prepare(batch, batches) for name, v in variants.items()}
        spent = dict.fromkeys(names, 0.0)
        for start in range(0, batches, per_turn):
            for name, variant in variants.items():
                t = time.perf_counter()
                for item in work[name][start : start + per_turn]:
                    variant.run(item)
                spent[name] += time.perf_counter() - t
        return {name: batch * batches / seconds for name, seconds in spent.items()}
    finally:
        for v in variants.values():
            v.close()


# --- concurrent writer processes, one event per transaction ----------------------------------
# The same idea with processes: every variant has its WRITERS processes started up front; they
# wait on a barrier, write one slice, meet at a second barrier, and the variants take turns.


def _writer(kind, url, index, slices, per_slice, start, end, serialize) -> None:
    try:
        _write_slices(kind, url, index, slices, per_slice, start, end, serialize)
    except BaseException:
        start.abort()  # the parent fails at once instead of waiting for this writer
        end.abort()
        raise


def _write_slices(kind, url, index, slices, per_slice, start, end, serialize) -> None:
    if kind == "store":
        engine = create_engine(url)
        store = open_store(engine, serialize_appends=serialize)
        # Warm up on a stream of this writer alone: the writers of the lock-off variant start
        # at the same time, and an append without the lock must not race one with it.
        warm = HeartbeatRecorded(server=f"warm-{serialize}-{index}", component="web", sent_at=T0)
        store.append([NewEvent(warm)])
        # Writer k appends heartbeats k, k+4, k+8...: disjoint streams, so that the run without
        # the lock measures the lock and not version conflicts.
        work = new_events(index, slices * per_slice, step=WRITERS)
        for s in range(slices):
            start.wait()
            for new in work[s * per_slice : (s + 1) * per_slice]:
                store.append([new])
            end.wait()
        engine.dispose()
    else:
        rows = RawRows().take(slices * per_slice)
        with psycopg.connect(libpq(url)) as conn, conn.cursor() as cur:
            for s in range(slices):
                start.wait()
                for row in rows[s * per_slice : (s + 1) * per_slice]:
                    cur.execute(RAW_INSERT, row)
                    conn.commit()
                end.wait()


def concurrent_turns(url: str, slices: int, per_slice: int) -> dict[str, float]:
    """events/s of 4 writer processes, one event per transaction, for each variant."""
    truncate(url)
    variants = {
        "store": ("store", True),
        "raw INSERT+COMMIT": ("raw", True),
        "store, lock off (info)": ("store", False),
    }
    ctx = mp.get_context("spawn")
    barriers = {v: (ctx.Barrier(WRITERS + 1), ctx.Barrier(WRITERS + 1)) for v in variants}
    procs = [
        ctx.Process(
            target=_writer,
            args=(kind, url, i, slices, per_slice, *barriers[v], serialize),
        )
        for v, (kind, serialize) in variants.items()
        for i in range(WRITERS)
    ]
    for p in procs:
        p.start()
    spent = dict.fromkeys(variants, 0.0)
    try:
        for _ in range(slices):
            for v in variants:
                start, end = barriers[v]
                start.wait(timeout=120)
                t = time.perf_counter()
                end.wait(timeout=120)
                spent[v] += time.perf_counter() - t
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    if any(p.exitcode for p in procs):
        raise RuntimeError("a writer process failed")
    return {v: WRITERS * slices * per_slice / seconds for v, seconds in spent.items()}


# --- the run --------------------------------------------------------------------------------

TARGETS = {
    "1/tx, 1 writer": ("raw INSERT+COMMIT", 0.8),
    "1/tx, 4 writers": ("raw INSERT+COMMIT", 0.8),
    "100/tx": ("raw executemany", None),
    "1000/tx": ("raw executemany", 0.6),
}
BATCH_VARIANTS = ["store", "raw executemany", "raw COPY"]


def one_round(url: str, scale: float) -> dict[tuple[str, str], float]:
    n = lambda x: max(1, int(x * scale))  # noqa: E731
    rates = {}
    for name, rate in take_turns(url, ["store", "raw INSERT+COMMIT"], 1, n(1500), 50).items():
        rates["1/tx, 1 writer", name] = rate
    for name, rate in take_turns(url, BATCH_VARIANTS, 100, n(150), 5).items():
        rates["100/tx", name] = rate
    for name, rate in take_turns(url, BATCH_VARIANTS, 1000, n(24), 1).items():
        rates["1000/tx", name] = rate
    for name, rate in concurrent_turns(url, 8, n(50)).items():
        rates["1/tx, 4 writers", name] = rate
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    args = parser.parse_args(argv)
    # A terminated run still drops its scratch database (the `finally` of scratch_database).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    rates: dict[tuple[str, str], list[float]] = defaultdict(list)
    with scratch_database() as url:
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute(PLAIN_TABLE_DDL)
        for r in range(args.rounds):
            for (scenario, name), rate in one_round(url, args.scale).items():
                rates[scenario, name].append(rate)
                print(f"round {r + 1}: {scenario:16} {name:24} {rate:>10,.0f}/s", file=sys.stderr)

    print(f"\nmedian of {args.rounds} rounds, events/s (PostgreSQL, shared 2-core machine)")
    print(f"{'scenario':16} {'variant':24} {'events/s':>10} {'ratio':>8}  target")
    for scenario, (baseline, target) in TARGETS.items():
        base = median_rate(rates[scenario, baseline])
        for (s, name), samples in rates.items():
            if s != scenario:
                continue
            rate = median_rate(samples)
            ratio = rate / base
            mark = ""
            if name == "store" and target is not None:
                verdict = "met" if ratio >= target else "MISSED"
                mark = f">= {target}x {baseline}: {verdict}"
            print(f"{s:16} {name:24} {rate:>10,.0f} {ratio:>7.2f}x  {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
