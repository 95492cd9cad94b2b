"""Timeout sweep: cost per sweep with 100,000 live components, and detection delay.

    .venv/bin/python -m bench.sweep [--database postgres|sqlite|both] [--components 100000]
                                    [--repeat 200] [--expiries 1000] [--skip-delay]

1. Sweep cost: 100,000 live Service components in the log; one long-lived DeadlineIndex (as
   the scheduler keeps) follows it; then `emit_timeouts` at instants where 0, 100 and 10,000
   deadlines have passed. Beside it, in the same run, the baseline a sweep without an index
   would pay: evaluating `rules.heartbeat` for every component (no database work at all).
2. Detection delay (PostgreSQL): a real `clustermon scheduler` process (sweep interval 1 s)
   over 1,000 Service components that stop at spread-out instants, with 99,000 live Web
   components beside them; for each timeout, `recorded_at - expired_at` (stamped in the
   committing transaction) and the time a follower polling every 10 ms first saw it.

3. Takeover: SIGKILL of the leading `clustermon scheduler` with a standby running, time until
   the standby leads (records its liveness), on both databases.

URL: CLUSTERMON_BENCH_POSTGRES_URL (a scratch database is created beside it and dropped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import migrations
from bench.common import scratch_database
from domain import rules
from domain.events import ConfigurationChanged, HeartbeatRecorded
from eventstore import EventStore, NewEvent, create_engine, open_store
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=300)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def populate(store: EventStore, clock: Clock, components: int) -> None:
    """100 components beat at T0, 10,000 at T0+10 s, the rest at T0+200 s."""
    groups = [(0, 100, T0), (100, 10_100, T0 + timedelta(seconds=10))]
    groups.append((10_100, components, T0 + timedelta(seconds=200)))
    for start, stop, at in groups:
        clock.now = at
        for chunk in range(start, stop, 5_000):
            store.append(
                [
                    NewEvent(HeartbeatRecorded(f"srv{i:06}", "service", sent_at=at))
                    for i in range(chunk, min(chunk + 5_000, stop))
                ]
            )


def ms(seconds: float) -> float:
    return seconds * 1000


def sweep_cost(url: str, components: int, repeat: int) -> None:
    engine = create_engine(url)
    clock = Clock(T0)
    store = open_store(engine, clock)
    started = time.perf_counter()
    populate(store, clock, components)
    print(f"  populated {components:,} components in {time.perf_counter() - started:.1f} s")

    index = DeadlineIndex()
    started = time.perf_counter()
    index.follow(store)
    print(f"  index built (fold + heap) in {ms(time.perf_counter() - started):,.0f} ms")

    quiet = T0 + TIMEOUT - timedelta(seconds=1)  # nothing has expired yet
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        assert emit_timeouts(store, quiet, index=index, detector="bench") == []
        samples.append(time.perf_counter() - started)
    samples.sort()
    nothing = statistics.median(samples)
    print(
        f"  0 expire:      median {ms(nothing):6.2f} ms"
        f"   p99 {ms(samples[int(0.99 * repeat)]):6.2f} ms   ({repeat} sweeps)"
    )

    state, config = index.state, index.state.configuration
    started = time.perf_counter()
    stale = sum(
        rules.heartbeat(c, config, quiet, state.monitor_resumed_at).state == "stale"
        for c in state.components()
    )
    full_scan = time.perf_counter() - started
    assert stale == 0
    print(
        f"  baseline, full scan of {components:,} components with rules.heartbeat (no I/O):"
        f" {ms(full_scan):,.1f} ms -> indexed sweep is {full_scan / nothing:,.0f}x cheaper"
    )

    for expected, at in (
        (100, T0 + TIMEOUT + timedelta(seconds=1)),
        (10_000, T0 + TIMEOUT + timedelta(seconds=11)),
    ):
        clock.now = at
        started = time.perf_counter()
        emitted = emit_timeouts(store, at, index=index, detector="bench")
        took = time.perf_counter() - started
        assert len(emitted) == expected, len(emitted)
        print(
            f"  {expected:>6,} expire: {ms(took):8.1f} ms"
            f"  ({ms(took) / expected:.3f} ms per timeout)"
        )
    # The sweep after a burst: it folds the timeouts it wrote, then finds nothing.
    started = time.perf_counter()
    assert emit_timeouts(store, clock.now, index=index) == []
    took = time.perf_counter() - started
    print(f"  next sweep (folds the 10,000 timeouts it wrote): {ms(took):.1f} ms")
    engine.dispose()


def detection_delay(url: str, expiries: int, background: int) -> None:
    from cli.processes import spawn_scheduler

    engine = create_engine(url)
    store = open_store(engine)
    stale_timeout = 5
    store.append(
        [
            NewEvent(
                ConfigurationChanged(
                    {"stale_timeout_seconds": stale_timeout, "heartbeat_frequency_seconds": 1}
                )
            )
        ]
    )
    now = datetime.now(UTC)
    for chunk in range(0, background, 5_000):
        store.append(
            [
                NewEvent(HeartbeatRecorded(f"bg{i:06}", "web", sent_at=now))
                for i in range(chunk, min(chunk + 5_000, background))
            ]
        )
    log = tempfile.NamedTemporaryFile(prefix="bench-scheduler-", suffix=".log", delete=False)  # noqa: SIM115
    child = spawn_scheduler(url, sweep_interval_seconds=1.0, name="bench", stderr=log, stdout=log)
    try:
        deadline = time.monotonic() + 120
        while b"leading" not in Path(log.name).read_bytes():
            if time.monotonic() > deadline or child.poll() is not None:
                sys.exit(f"the scheduler did not start; see {log.name}")
            time.sleep(0.1)

        # Steady state first: the scheduler process also runs the projection catch-up, which
        # has 100,000 components to write into the read tables after a start.
        from projections.readmodel.rows import read_checkpoint

        head = store.head_position()
        started = time.monotonic()
        while True:
            with engine.connect() as conn:
                checkpoint = read_checkpoint(conn)
            if checkpoint is not None and checkpoint.position >= head:
                break
            if time.monotonic() - started > 600 or child.poll() is not None:
                sys.exit(f"the projections did not catch up; see {log.name}")
            time.sleep(0.2)
        print(
            f"  (scheduler leading, projections caught up after {time.monotonic() - started:.0f} s)"
        )

        seen: dict[str, float] = {}
        stop = threading.Event()

        # A follower reads everything by position (a filtered read could skip nothing, but
        # this is what the projections do) and notes when each timeout became visible.
        def follow_positions():
            after = store.head_position()
            while not stop.is_set():
                page = store.read_all(after=after, limit=None)
                wall = time.time()
                for r in page:
                    if r.type == "ComponentTimedOut":
                        seen.setdefault(r.stream, wall)
                    after = r.position
                time.sleep(0.01)

        watcher = threading.Thread(target=follow_positions, daemon=True)
        watcher.start()
        # 1,000 Service components beat once, 10 every 50 ms: deadlines spread over 5 s.
        for batch in range(0, expiries, 10):
            store.append(
                [
                    NewEvent(HeartbeatRecorded(f"svc{i:05}", "service", sent_at=datetime.now(UTC)))
                    for i in range(batch, min(batch + 10, expiries))
                ]
            )
            time.sleep(0.05)
        deadline = time.monotonic() + stale_timeout + 30
        while len(seen) < expiries and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        watcher.join()
    finally:
        child.terminate()
        child.wait(timeout=20)
    timeouts = [
        r
        for r in store.read_all(limit=None, types=["ComponentTimedOut"])
        if r.stream.startswith("svc")
    ]
    assert len(timeouts) == expiries, (len(timeouts), expiries)
    assert {r.event.detector for r in timeouts} == {"bench"}
    recorded = sorted((r.recorded_at - r.event.expired_at).total_seconds() for r in timeouts)
    visible = sorted(seen[r.stream] - r.event.expired_at.timestamp() for r in timeouts)
    for label, values in (
        ("expiry -> committed (recorded_at)", recorded),
        ("expiry -> seen by a follower", visible),
    ):
        print(
            f"  {label:<34} median {ms(statistics.median(values)):6.0f} ms"
            f"   max {ms(values[-1]):6.0f} ms   (n={len(values)})"
        )
    print("  target: <= sweep interval + 250 ms = 1250 ms")
    engine.dispose()


def takeover(url: str, rounds: int) -> None:
    """SIGKILL the leader with a standby running: time until the standby records that it leads
    (its liveness row), i.e. until it sweeps."""
    import os
    import signal

    import sqlalchemy as sa

    from cli.processes import spawn_scheduler

    engine = create_engine(url)

    def leaders():
        with engine.connect() as conn:
            query = "SELECT detector FROM scheduler_liveness ORDER BY last_seen_at DESC"
            return conn.execute(sa.text(query)).scalars().all()

    def wait(predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                sys.exit("timed out")
            time.sleep(0.01)

    samples = []
    with tempfile.TemporaryDirectory() as folder:
        logs = Path(folder)
        children = {}
        try:
            for n in range(rounds + 1):
                name = f"s{n}"
                log = open(logs / f"{name}.log", "wb")  # noqa: SIM115
                children[name] = spawn_scheduler(url, name=name, stdout=log, stderr=log)
                log.close()
                wait(lambda name=name: b"standing by" in (logs / f"{name}.log").read_bytes())
                if n == 0:
                    wait(lambda: leaders()[:1] == ["s0"])
                    continue
                time.sleep(1.5)  # the new standby's first election ticks (startup)
                current = leaders()[0]
                killed = time.monotonic()
                os.kill(children[current].pid, signal.SIGKILL)
                children[current].wait()
                wait(lambda current=current: leaders()[0] != current)
                samples.append(time.monotonic() - killed)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
                    child.wait(timeout=20)
    samples.sort()
    print(
        f"  SIGKILL of the leader -> standby leads: median {ms(statistics.median(samples)):.0f} ms"
        f"   max {ms(samples[-1]):.0f} ms   ({len(samples)} takeovers; standbys retry every 1 s)"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--components", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--expiries", type=int, default=1_000)
    parser.add_argument("--skip-delay", action="store_true")
    parser.add_argument("--takeovers", type=int, default=5)
    args = parser.parse_args()

    if args.database in ("postgres", "both"):
        print(f"PostgreSQL: sweep cost, {args.components:,} live components")
        with scratch_database() as url:
            sweep_cost(url, args.components, args.repeat)
        if not args.skip_delay:
            print(f"PostgreSQL: detection delay over {args.expiries:,} expiries")
            with scratch_database() as url:
                detection_delay(url, args.expiries, args.components - args.expiries)
        if args.takeovers:
            print(f"PostgreSQL: leader takeover, {args.takeovers} times")
            with scratch_database() as url:
                takeover(url, args.takeovers)
    if args.database in ("sqlite", "both"):
        print(f"SQLite: sweep cost, {args.components:,} live components")
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrations.upgrade(url)
            sweep_cost(url, args.components, args.repeat)
        if args.takeovers:
            print(f"SQLite: leader takeover (file lock), {args.takeovers} times")
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{folder}/takeover.db"
                migrations.upgrade(url)
                takeover(url, args.takeovers)


if __name__ == "__main__":
    main()
