"""What a `GET /cluster` read costs for 10,000 servers (20,000 components), on PostgreSQL.

    .venv/bin/python -m bench.current_view [--servers 10000] [--reads 300]
        [--beats-per-second 667] [--reads-per-second 10]

A scratch database gets one heartbeat per component by COPY (stamped over 200 s) and the
projection runner catches up. Then time runs like a clock: before each read it moves forward by
a random step (mean 1 / reads-per-second), and the heartbeats that arrive in that step
(beats-per-second: every component beating every 30 s) are appended with that time and
projected, oldest component first; 1% of the servers are dead (never beat again), so their
services cross their deadlines during the run and their stale reasons change every second.

Each read is what `GET /cluster` does after its read-your-writes catch-up: refresh the state
(`read.current_state`: one checkpoint query + the copy-on-write fold of the new events) and
produce the body for `now` at its whole second (`ViewRenderer.render_parts`: the pieces of
the body the API serves, one after the other). The baseline, in
the same run on the same state and `now` (every 4th read), is the full evaluation the API did
before: `orjson.dumps(cluster_view(state, now))`. Both bodies are compared after JSON decoding.
A full garbage collection follows each baseline, untimed (its garbage is not the reads').
Garbage-collector pauses inside the timed reads are counted and shown.
A last phase reads at random `now` anywhere in a 10-minute window (time jumping back and forth,
which the API's clock never does: many deadlines are crossed between two reads).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from datetime import timedelta

import orjson

from bench.common import T0, scratch_database
from bench.view_at import PER_COMMIT, copy_heartbeats, percentile
from domain.events import HeartbeatRecorded
from eventstore import NewEvent, create_engine, open_store
from projections.readmodel import current as read
from projections.readmodel.rendered import ViewRenderer
from projections.readmodel.runner import ProjectionRunner
from projections.readmodel.view import cluster_view


def _line(name: str, ms: list[float]) -> str:
    return (
        f"  {name:<52} median {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms"
        f"   (n={len(ms)})"
    )


def _beat(server: str, component: str, at) -> NewEvent:
    return NewEvent(
        HeartbeatRecorded(
            server=server,
            component=component,
            sent_at=at,
            status="ok",
            verification="verified",
            os="Ubuntu",
            os_version="24.04",
            ip="10.0.0.1",
            product="ProGet",
            product_version="2025.10",
            encryption_key_fingerprint="3f" * 32,
        )
    )


def _gc_timer(pauses: list[float]):
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    return callback


def _full(state, now) -> bytes:
    return orjson.dumps(cluster_view(state, now), option=orjson.OPT_NON_STR_KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--beats-per-second", type=float, default=667.0)
    parser.add_argument("--reads-per-second", type=float, default=10.0)
    args = parser.parse_args()
    rng = random.Random(3)
    with scratch_database() as url:
        copy_heartbeats(url, args.servers * 2, servers=args.servers)
        engine = create_engine(url)
        clock = [T0 + timedelta(seconds=(args.servers * 2 - 1) // PER_COMMIT)]
        store = open_store(engine, clock=lambda: clock[0])
        runner = ProjectionRunner(store, batch_size=5_000)
        runner.catch_up()

        # Components in the order they last beat (the COPY's order); dead servers never beat.
        dead = {f"srv-{i:04d}" for i in range(0, args.servers, 100)}
        queue = [
            (f"srv-{i // 2:04d}", "web" if i % 2 == 0 else "service")
            for i in range(args.servers * 2)
            if f"srv-{i // 2:04d}" not in dead
        ]
        renderer = ViewRenderer()
        started = time.perf_counter()
        renderer.render(read.current_state(engine), clock[0])
        cold = (time.perf_counter() - started) * 1000
        assert orjson.loads(renderer.render(read.current_state(engine), clock[0]))[
            "server_count"
        ] == len({s for s, _ in queue} | dead)

        pauses: list[float] = []
        gc.callbacks.append(_gc_timer(pauses))
        refresh, render, reads, full, sizes = [], [], [], [], []
        in_reads = 0.0
        due, head, checked = 0.0, 0, 0
        for i in range(args.reads):
            step = rng.uniform(0, 2 / args.reads_per_second)
            clock[0] += timedelta(seconds=step)
            due += step * args.beats_per_second
            batch = [_beat(*queue[(head + j) % len(queue)], clock[0]) for j in range(int(due))]
            head, due = head + len(batch), due - len(batch)
            if batch:
                store.append(batch)
                runner.catch_up()
            now = clock[0].replace(microsecond=0)  # the API evaluates at whole seconds
            before = sum(pauses)
            t0 = time.perf_counter()
            state = read.current_state(engine)
            t1 = time.perf_counter()
            parts = renderer.render_parts(state, now)  # what the API hands to the server
            t2 = time.perf_counter()
            in_reads += sum(pauses) - before
            refresh.append((t1 - t0) * 1000)
            render.append((t2 - t1) * 1000)
            reads.append((t2 - t0) * 1000)
            sizes.append(sum(map(len, parts)))
            if i % 4 == 0:
                t3 = time.perf_counter()
                baseline = _full(state, now)
                full.append((time.perf_counter() - t3) * 1000)
                if i % 40 == 0:
                    body = orjson.loads(b"".join(parts))
                    assert body == orjson.loads(baseline), f"read {i} differs"
                    checked += 1
                del baseline
                # The baseline's 50,000 dicts get promoted by the collector while it runs and
                # would trigger full collections during the next reads: pay that here, untimed.
                gc.collect()

        # Time jumping anywhere in a 10-minute window (no new events): not the API's clock.
        state = read.current_state(engine)
        jumps = []
        for _ in range(max(10, args.reads // 10)):
            now = clock[0] + timedelta(seconds=rng.randint(-300, 300))
            t0 = time.perf_counter()
            renderer.render_parts(state, now)
            jumps.append((time.perf_counter() - t0) * 1000)

        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end;"
            f" GET /cluster read, {args.servers:,} servers (PostgreSQL), {args.reads} reads,"
            f" ~{args.beats_per_second / args.reads_per_second:.0f} new heartbeats projected"
            f" before each, body {statistics.median(sizes) / 1e6:.1f} MB:"
        )
        print(_line("refresh state (checkpoint + fold new events)", refresh))
        print(_line("render body (ViewRenderer)", render))
        print(_line("read = refresh + render", reads))
        print(_line("baseline: orjson.dumps(cluster_view(state, now))", full))
        print(_line("render at random now in a 10-min window (jumps)", jumps))
        print(f"  first render (cold, every server evaluated): {cold:,.0f} ms")
        print(f"  garbage-collector pauses inside the timed reads: {in_reads:.1f} ms in all")
        print(
            f"  read p99 / baseline p99 = {percentile(reads, 99) / percentile(full, 99):.3f}"
            f" ({percentile(full, 99) / percentile(reads, 99):.0f}x faster);"
            f" {checked} bodies checked equal to the baseline's"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
