"""Request latency while an archive runs, against `clustermon serve` (issue #21, "Speed").

    .venv/bin/python -m bench.retention_load [--events 2000000] [--days 10] [--seconds 30]
                                             [--sqlite]

A scratch database (beside CLUSTERMON_BENCH_POSTGRES_URL; --sqlite: a SQLite file, default
--events 300,000) gets `--events` heartbeats of 1,000 components spread evenly over `--days`
days ending a minute ago (bench/expensive_reads.fill), the snapshots a scheduler would have
kept (one every SNAPSHOT_EVERY events, so that the archive's boundary snapshot folds at most
that many, as in a deployment with a scheduler) and an up-to-date read model (both untimed).
Then `clustermon serve`, and two phases in the same run, against the same server:
- idle: 4 agent connections each send one heartbeat every 40 ms (100/s in all) and one viewer
  connection GETs /api/v1/cluster every 200 ms (5/s), for --seconds;
- archiving: the same while `clustermon archive --before <now - 1 day> --to DIR` runs as its
  own process (the ~90 % of the events older than a day go); the phase lasts until the
  archive has ended, and at least --seconds.
Printed: p50/p99 of both requests in both phases and the ratio archiving/idle, how many
requests each phase sent (and any that failed), the archive's wall time, events/s and CPU
(its process, getrusage), the slowest requests and when they were sent, and the load average
(the machine may be shared).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import BEAT, clustermon_of
from bench.common import libpq, scratch_database
from bench.expensive_reads import BEAT_INTERVAL, SENDERS, fill, make_tokens, serving
from bench.view_at import percentile
from eventstore import create_engine, open_store, partitions, retention
from projections.readmodel.rebuild import rebuild
from projections.readmodel.snapshots import take_snapshot

ROOT = Path(__file__).resolve().parent.parent
READ_INTERVAL = 0.200  # the viewer's GET /cluster: 5 a second
SNAPSHOT_EVERY = 10_000
KEPT = timedelta(days=1)  # `archive --before now - KEPT`


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None
    headers: dict
    expected: int  # the status of a success


@dataclass
class Samples:
    """Filled by several threads: one append of a tuple each, so a latency stays paired with
    its time."""

    timed: list[tuple[float, float]] = field(default_factory=list)  # (ms, time.monotonic() sent)
    failed: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), what)

    @property
    def ms(self) -> list[float]:
        return [ms for ms, _ in self.timed]


def heartbeat_request(token: str, server: str) -> Request:
    """What expensive_reads.send_heartbeats posts, the server named `server`."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return Request(
        "POST", "/api/v1/heartbeats", orjson.dumps({**BEAT, "server": server}), headers, 202
    )


def requests(
    port: int, request: Request, every: float, stop: threading.Event, out: Samples
) -> None:
    """One keep-alive connection sending `request` every `every` seconds; latencies (ms) in
    `out.timed`. Unlike expensive_reads.send_heartbeats, an unexpected answer (a 503 while the
    archive holds a lock, say) is recorded in `out.failed` with its detail, and timed like the
    rest, instead of ending the thread: it is what this benchmark is looking for."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.request(request.method, request.path, request.body, request.headers)
            response = conn.getresponse()
            body = response.read()
            if response.status != request.expected:
                detail = orjson.loads(body).get("detail", "") if body.startswith(b"{") else ""
                out.failed.append((started, f"{response.status} {detail}"))
        except (http.client.HTTPException, OSError) as exc:
            out.failed.append((started, type(exc).__name__))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out.timed.append(((time.monotonic() - started) * 1000, started))
        next_at += every
        stop.wait(max(0.0, next_at - time.monotonic()))
    conn.close()


def load(port: int, agent: str, viewer: str, seconds: float, during=None) -> dict:
    """Heartbeats and cluster reads for `seconds`, or, with `during` (a started process),
    until it has ended and at least `seconds` have passed; the latencies of each."""
    stop = threading.Event()
    beats, reads = Samples(), Samples()
    read = Request("GET", "/api/v1/cluster", None, {"Authorization": f"Bearer {viewer}"}, 200)
    threads = [
        threading.Thread(
            target=requests,
            args=(port, heartbeat_request(agent, f"bench-{i}"), BEAT_INTERVAL, stop, beats),
        )
        for i in range(SENDERS)
    ]
    threads.append(threading.Thread(target=requests, args=(port, read, READ_INTERVAL, stop, reads)))
    began = time.monotonic()
    for thread in threads:
        thread.start()
    ended = None
    if during is not None:
        during.wait()
        ended = time.monotonic()
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "began": began,
        "beats": beats,
        "reads": reads,
        "seconds": time.monotonic() - began,
        "ended": ended,
    }


def archive_process(url: str, before: datetime, folder: Path, log: Path) -> subprocess.Popen:
    """`clustermon archive` started in its own process, its output in `log`."""
    env = {**os.environ, "CLUSTERMON_DATABASE_URL": url}
    with open(log, "w") as out:
        return subprocess.Popen(
            [*clustermon_of(ROOT), "archive", "--before", before.isoformat(), "--to", str(folder)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def count_before(url: str, before: datetime) -> int:
    """How many events the archive will take (the store's own answer)."""
    engine = create_engine(url)
    try:
        found = retention.archivable_range(engine, before)
    finally:
        engine.dispose()
    return found[2] if found is not None else 0


def line(label: str, samples: Samples, idle: Samples | None = None) -> str:
    p50, p99 = percentile(samples.ms, 50), percentile(samples.ms, 99)
    text = f"{label:18s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  ({len(samples.ms):,} requests"
    text += f", {len(samples.failed)} failed)" if samples.failed else ")"
    if idle is not None:
        text += (
            f"  archiving/idle: p50 x{p50 / percentile(idle.ms, 50):.2f},"
            f" p99 x{p99 / percentile(idle.ms, 99):.2f}"
        )
    return text


def failures(samples: Samples, since: float) -> str:
    """The failed requests by answer, with when they were sent (seconds after `since`)."""
    kinds = Counter(what for _, what in samples.failed)
    times = [at - since for at, _ in samples.failed]
    return f"{dict(kinds)} sent from {min(times):.1f} s to {max(times):.1f} s"


def slowest(samples: Samples, since: float, count: int = 3) -> str:
    """The slowest requests: how long, and when they were sent (seconds after `since`)."""
    worst = sorted(samples.timed, reverse=True)[:count]
    return ", ".join(f"{ms:.0f} ms at {at - since:.1f} s" for ms, at in worst)


def report(idle: dict, busy: dict, started: float) -> None:
    print(f"  idle ({idle['seconds']:.0f} s):")
    print("    " + line("POST /heartbeats", idle["beats"]))
    print("    " + line("GET /cluster", idle["reads"]))
    print(f"  archiving ({busy['seconds']:.0f} s, the archive started at 0 s):")
    print("    " + line("POST /heartbeats", busy["beats"], idle["beats"]))
    print("    " + line("GET /cluster", busy["reads"], idle["reads"]))
    print(f"    slowest heartbeats: {slowest(busy['beats'], started)}")
    print(f"    slowest reads: {slowest(busy['reads'], started)}")
    for name, phase, since in (("idle", idle, idle["began"]), ("archiving", busy, started)):
        for request in ("beats", "reads"):
            if phase[request].failed:
                print(f"    {name} {request} FAILED: {failures(phase[request], since)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="2,000,000 (SQLite: 300,000)")
    parser.add_argument("--days", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    args = parser.parse_args()
    events = args.events or (300_000 if args.sqlite else 2_000_000)
    port = 19000 + os.getpid() % 1000
    end = datetime.now(UTC) - timedelta(minutes=1)
    start = end - timedelta(days=args.days)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.sqlite:
            url = f"sqlite:///{folder}/bench.db"
        else:
            url = stack.enter_context(scratch_database())
        subprocess.run(
            [*clustermon_of(ROOT), "db", "upgrade"],
            env={**os.environ, "CLUSTERMON_DATABASE_URL": url},
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        began = time.monotonic()
        engine = create_engine(url)
        with engine.begin() as conn:
            if partitions.is_partitioned(conn):
                partitions.cover(conn, 1, events + partitions.PARTITION_SIZE)
        fill(url, events, start, end)
        filled = time.monotonic() - began
        store = open_store(engine)
        take_snapshot(store, every_events=SNAPSHOT_EVERY)
        # The read model as a running deployment has it: up to date (else the first GET
        # /cluster would fold the whole log inside the request, past gunicorn's timeout).
        rebuild(store)
        engine.dispose()
        if not args.sqlite:
            with psycopg.connect(libpq(url), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        before = end + timedelta(minutes=1) - KEPT
        archived = count_before(url, before)
        database = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"{database}: {events:,} heartbeats over {args.days:g} days filled in {filled:.0f} s;"
            f" {archived:,} recorded before {before:%Y-%m-%d %H:%M} go to the archive"
        )
        agent = make_tokens(url, "agent", 1)[0]
        viewer = make_tokens(url, "viewer", 1)[0]
        print(
            f"load: {SENDERS} agent connections x {1 / BEAT_INTERVAL:.0f} heartbeats/s"
            f" = {SENDERS / BEAT_INTERVAL:.0f}/s,"
            f" 1 viewer x {1 / READ_INTERVAL:.0f} GET /cluster/s; load average"
            f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
            flush=True,
        )
        with serving(ROOT, url, port, {}):
            load(port, agent, viewer, 3)  # warm-up: workers, connections, the current view
            idle = load(port, agent, viewer, args.seconds)
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            log = folder / "archive.log"
            process = archive_process(url, before, folder / "archive", log)
            busy = load(port, agent, viewer, args.seconds, during=process)
            wall = busy["ended"] - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = log.read_text()
            load_average = os.getloadavg()
            # Printed before the server stops (its shutdown may time out).
            if process.returncode != 0:
                raise SystemExit(f"the archive failed ({process.returncode}):\n{out[-3000:]}")
            archive_cpu = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
            report(idle, busy, started)
            print(
                f"  archive: {archived:,} events in {wall:.1f} s ({archived / wall:,.0f} events/s),"
                f" its process {archive_cpu:.1f} CPU-s; load average {load_average[0]:.1f}"
            )
            print(f"    {out.strip()}", flush=True)


if __name__ == "__main__":
    main()
