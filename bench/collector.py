"""Collection: the /health poller with 1,000 targets every 30 s, and how many one box keeps up with.

    .venv/bin/python -m bench.collector [--database sqlite|postgres] [--targets 1000]
        [--interval 30] [--window 60] [--ramp 2000,4000,8000,12000,16000,20000]
        [--baseline-seconds 10] [--throughput-seconds 15]

Fake product servers (collector/fake_product.py) run in a separate process on the same box;
the poller runs here as the leading scheduler runs it (its own asyncio loop thread, the group
committer, target_polls written once a second) with a thread standing for the scheduler's
`collect` job (every second: follow the log, hand the targets over).

1. Client baselines, bare loops of GETs of the same URLs with no clustermon work, as fast as
   they go: asyncio + httpx.AsyncClient (what the poller uses; the baseline of 3.) and a thread
   pool of httpx.Client (the alternative the choice was measured against); and the asyncio
   loop paced at the steady state's rate, for its CPU per GET.
2. Steady state: `--targets` every `--interval` s, measured over `--window` s after each
   target's grid has started (the last polls are pre-written to target_polls, as a running
   system has them, so the run does not start with every target due at once): polls/s, lag
   (start of the poll - due time) p50/p99/max, CPU per poll (this process; on PostgreSQL its
   backends too), the fake servers' CPU beside it.
3. Throughput: 2,000 targets due every 2 s (more than can be done): polls/s the poller
   completes, against the asyncio bare loop of 1.: target >= 0.5x.
4. Ramp: the steady state with more targets, one interval each, until the first count that
   misses: lag p99 < 1 s and >= 98% of the due polls done. The largest count that passed is the
   one this box keeps up with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

import migrations
from bench.common import TICK, cpu_seconds, database_backends, machine_ticks, scratch_database
from bench.soak_procs import ticks
from collector import probe
from collector.poll_log import PollRow, write_polls
from collector.poller import DEFAULT_CONCURRENCY, Poller, PollResult
from domain.events import TargetConfigured
from eventstore import NewEvent, create_engine, open_store
from eventstore.clock import utc_now
from eventstore.commands import ClusterCommands
from scheduler.deadlines import DeadlineIndex

LAG_TARGET_SECONDS = 1.0
DONE_TARGET = 0.98  # of the polls due in the window


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def fake_servers(count: int) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a fake-product process serving fake-0001 ... fake-<count>."""
    process = subprocess.Popen(
        [sys.executable, "-m", "collector.fake_product", "--servers", str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process.pid
    finally:
        process.terminate()
        process.wait(10)


def urls(base: str, count: int) -> list[str]:
    return [f"{base}/fake-{i:04d}" for i in range(1, count + 1)]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgres":
        with scratch_database() as url:
            yield url
        return
    folder = tempfile.mkdtemp(prefix="clustermon-bench-collector-")
    try:
        url = f"sqlite:///{Path(folder) / 'clustermon.db'}"
        migrations.upgrade(url)
        yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- 1. bare loops ------------------------------------------------------------------------


@dataclass
class Rate:
    requests: int
    seconds: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / max(1, self.requests) * 1e6


def bare_asyncio(targets: list[str], seconds: float, concurrency: int) -> Rate:
    async def run() -> int:
        done = 0
        deadline = time.monotonic() + seconds
        async with probe.client(probe.tls_context(), concurrency) as http:

            async def worker(i: int) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    answer = await http.get(probe.health_url(targets[i % len(targets)]))
                    answer.raise_for_status()
                    done += 1
                    i += concurrency

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done

    cpu, started = process_cpu(), time.perf_counter()
    done = asyncio.run(run())
    return Rate(done, time.perf_counter() - started, process_cpu() - cpu)


def bare_paced(targets: list[str], rate: float, seconds: float, concurrency: int) -> Rate:
    """The asyncio bare loop at a given rate (the steady state's): at 33 GETs a second each
    one finds cold caches and a sleeping loop, and costs several times what it costs at full
    speed, so CPU per poll is compared at the same rate."""

    async def run() -> int:
        done = 0
        async with probe.client(probe.tls_context(), concurrency) as http:

            async def one(url: str) -> None:
                nonlocal done
                answer = await http.get(probe.health_url(url))
                answer.raise_for_status()
                done += 1

            started, i, tasks = time.monotonic(), 0, []
            while time.monotonic() - started < seconds:
                tasks.append(asyncio.create_task(one(targets[i % len(targets)])))
                i += 1
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            await asyncio.gather(*tasks)
        return done

    cpu, started = process_cpu(), time.perf_counter()
    done = asyncio.run(run())
    return Rate(done, time.perf_counter() - started, process_cpu() - cpu)


def bare_threads(targets: list[str], seconds: float, concurrency: int) -> Rate:
    deadline = time.monotonic() + seconds
    http = httpx.Client(
        follow_redirects=False,
        trust_env=False,
        headers=probe.HEADERS,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    counts = [0] * concurrency

    def worker(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            http.get(probe.health_url(targets[i % len(targets)])).raise_for_status()
            counts[k] += 1
            i += concurrency

    cpu, started = process_cpu(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    http.close()
    return Rate(sum(counts), time.perf_counter() - started, process_cpu() - cpu)


# --- 2.-4. the poller ---------------------------------------------------------------------


@dataclass
class Run:
    targets: int
    interval: float
    window: float
    polls: list[PollResult] = field(default_factory=list)
    cpu: float = 0.0  # this process, in the window
    database_cpu: float = 0.0  # PostgreSQL backends, in the window
    fake_cpu: float = 0.0  # the fake servers' process, in the window
    machine_busy: float = 0.0  # of both cores, in the window

    @property
    def due(self) -> float:
        return self.targets * self.window / self.interval

    @property
    def lags(self) -> list[float]:
        return sorted((p.started - p.due).total_seconds() for p in self.polls)

    def lag(self, q: float) -> float:
        lags = self.lags
        return lags[min(len(lags) - 1, int(q * len(lags)))] if lags else float("nan")

    @property
    def failed(self) -> int:
        return sum(1 for p in self.polls if not p.outcome.ok or p.error or p.dropped)

    @property
    def kept_up(self) -> bool:
        return self.lag(0.99) < LAG_TARGET_SECONDS and len(self.polls) >= DONE_TARGET * self.due

    def describe(self) -> str:
        n = max(1, len(self.polls))
        return (
            f"{self.targets:>6} targets / {self.interval:g} s: {len(self.polls):>6} polls"
            f" ({len(self.polls) / self.window:7.1f}/s, {len(self.polls) / self.due:6.1%} of due)"
            f"  lag p50 {self.lag(0.5) * 1000:7.1f} ms  p99 {self.lag(0.99) * 1000:7.1f} ms"
            f"  max {self.lag(1.0) * 1000:7.1f} ms  CPU/poll {self.cpu / n * 1e6:5.0f} us"
            f" (+db {self.database_cpu / n * 1e6:4.0f} us, fake servers"
            f" {self.fake_cpu / n * 1e6:4.0f} us)  machine {self.machine_busy:4.0%}"
            f"  failed {self.failed}  {'kept up' if self.kept_up else 'MISSED'}"
        )


def configure(url: str, targets: list[str], interval: int, timeout: int) -> None:
    """The targets' TargetConfigured events (appended in batches: the bench's setup, not what
    it measures) and a last poll for each at `now`, as a running system has them."""
    store = open_store(create_engine(url), utc_now)
    names = [f"target-{i:05d}" for i in range(1, len(targets) + 1)]
    for start in range(0, len(names), 1000):
        store.append(
            [
                NewEvent(TargetConfigured(name, target, interval, timeout, True))
                for name, target in zip(
                    names[start : start + 1000], targets[start : start + 1000], strict=True
                )
            ]
        )
    now = datetime.now(UTC)
    write_polls(store.engine, [PollRow(name, now, True, None, 0.0) for name in names])
    store.engine.dispose()


def run_poller(
    url: str,
    targets: list[str],
    interval: int,
    timeout: int,
    window: float,
    fake_pid: int,
    concurrency: int,
    settle: float = 2.0,
) -> Run:
    configure(url, targets, interval, timeout)
    engine = create_engine(url)
    store = open_store(engine, utc_now)
    run = Run(len(targets), interval, window)
    measuring = threading.Event()

    def on_poll(result: PollResult) -> None:
        if measuring.is_set():
            run.polls.append(result)

    poller = Poller(ClusterCommands(store), utc_now, concurrency=concurrency, on_poll=on_poll)
    index = DeadlineIndex()
    index.follow(store)
    stopping = threading.Event()

    def collect_job() -> None:  # what the scheduler's `collect` job does every second
        while not stopping.wait(1.0):
            index.follow(store)
            poller.lead(index.state)

    job = threading.Thread(target=collect_job, daemon=True)
    poller.lead(index.state)
    job.start()
    time.sleep(settle)
    backends = database_backends(url.rsplit("/", 1)[1]) if url.startswith("postgres") else set()
    cpu, db_cpu, fake_cpu = process_cpu(), cpu_seconds(backends), ticks(fake_pid) or 0
    idle, total = machine_ticks()
    measuring.set()
    time.sleep(window)
    measuring.clear()
    run.cpu = process_cpu() - cpu
    run.database_cpu = cpu_seconds(backends) - db_cpu
    run.fake_cpu = ((ticks(fake_pid) or 0) - fake_cpu) / TICK
    idle2, total2 = machine_ticks()
    run.machine_busy = 1 - (idle2 - idle) / max(1, total2 - total)
    stopping.set()
    job.join()
    poller.close()
    engine.dispose()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--timeout", type=int, default=5)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured (steady)")
    parser.add_argument("--ramp", default="2000,4000,8000,12000,16000,20000", help="'' to skip")
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--throughput-seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    args = parser.parse_args()
    ramp = [int(n) for n in args.ramp.split(",") if n]
    largest = max([args.targets, 2000, *ramp])

    with fake_servers(largest) as (base, fake_pid):
        print(f"fake servers: {largest:,} at {base} (pid {fake_pid}); database {args.database}")
        sample = urls(base, 2000)

        print("1. bare loops of the same GETs (no clustermon work)")
        bare = bare_asyncio(sample, args.baseline_seconds, args.concurrency)
        print(
            f"   asyncio + httpx.AsyncClient: {bare.per_second:7.0f}/s, {bare.cpu_us:4.0f} us CPU"
        )
        threads = bare_threads(sample, args.baseline_seconds, args.concurrency)
        print(
            f"   threads + httpx.Client:      {threads.per_second:7.0f}/s,"
            f" {threads.cpu_us:4.0f} us CPU"
        )

        steady_rate = args.targets / args.interval
        paced = bare_paced(sample, steady_rate, max(10.0, args.baseline_seconds), args.concurrency)
        print(f"   asyncio, paced at {steady_rate:.1f}/s:     {paced.cpu_us:4.0f} us CPU per GET")

        print(f"2. steady state: {args.targets:,} targets every {args.interval} s")
        with database(args.database) as url:
            steady = run_poller(
                url,
                urls(base, args.targets),
                args.interval,
                args.timeout,
                args.window,
                fake_pid,
                args.concurrency,
            )
        print("   " + steady.describe())
        per_poll = steady.cpu / max(1, len(steady.polls)) * 1e6
        print(f"   CPU per poll = {per_poll / paced.cpu_us:.2f}x a bare GET at the same rate")

        print("3. throughput: 2,000 targets due every 2 s (saturated)")
        with database(args.database) as url:
            saturated = run_poller(
                url, sample, 2, 1, args.throughput_seconds, fake_pid, args.concurrency
            )
        rate = len(saturated.polls) / saturated.window
        print(
            f"   {rate:7.0f} polls/s = {rate / bare.per_second:.2f}x the asyncio bare loop"
            f" ({bare.per_second:.0f}/s; target >= 0.5x); lag p50"
            f" {saturated.lag(0.5):.2f} s (due faster than done: expected)"
        )

        print(f"4. ramp: one interval ({args.interval} s) per step")
        kept = steady.targets if steady.kept_up else 0
        for count in ramp:
            with database(args.database) as url:
                step = run_poller(
                    url,
                    urls(base, count),
                    args.interval,
                    args.timeout,
                    float(args.interval),
                    fake_pid,
                    args.concurrency,
                )
            print("   " + step.describe())
            if not step.kept_up:
                break
            kept = count
        print(f"   largest target count kept up with: {kept:,}")


if __name__ == "__main__":
    main()
