"""Notifications: draining pending deliveries to a local webhook, against a bare httpx loop;
and the time from a component's logical expiry to its webhook message.

`Sender.send_due` as the leading scheduler runs it (claim a batch with a lease, deliver each
message through `notify.transport.deliver`, record each outcome in its own transaction) drains
N pending rows to a webhook receiver in a process of its own on 127.0.0.1 (HTTP/1.1 keep-alive,
answers 204). Baseline in the same run: the same N POSTs with the same httpx client and the same
headers and body, and no database at all. Both are checked against what the receiver counted.

Expiry -> webhook (`--latency N`): a real `clustermon scheduler` process (sweep every second,
`notify-follow` and `notify-send` every second) on a database where N Service components beat
once, 10 every 50 ms, with a 5 s stale timeout; the receiver notes when each item arrived, and
the latency is that minus the item's `at` (the logical expiry the timeout is stamped with).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

import migrations
from bench.common import scratch_database
from domain.events import ChannelConfigured, ConfigurationChanged, HeartbeatRecorded
from eventstore import create_engine, open_store
from eventstore.commands import ClusterCommands
from eventstore.store import NewEvent
from notify import transport
from notify.secrets import seal
from notify.sender import Sender
from notify.tables import deliveries
from projections.readmodel.runner import ProjectionRunner

KEY = "bench-secret-key"
PAYLOAD = {
    "trigger": "stale",
    "server": "srv-001",
    "component": "service",
    "at": "2026-11-27T10:00:00Z",
    "reasons": ["no heartbeat for 300 s (timeout 120 s)"],
    "source_position": 1,
    "link": "http://127.0.0.1:8000/?at=2026-11-27T10:00:00Z",
}


def _receiver(port: int, ready) -> None:
    """The webhook: counts POSTs and distinct ids; GET answers the counts as JSON."""
    seen: set[str] = set()
    posts = [0]
    arrivals: list[tuple[str, str, str, float]] = []  # server, component, at, wall clock

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client's connection is reused

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            wall = time.time()
            message = orjson.loads(body)
            posts[0] += 1
            seen.add(message["id"])
            for item in message.get("items") or [message]:
                arrivals.append((item.get("server"), item.get("component"), item.get("at"), wall))
            self.send_response(204)
            self.end_headers()

        def do_GET(self) -> None:
            answer = orjson.dumps({"posts": posts[0], "ids": len(seen), "arrivals": arrivals})
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            posts[0] = 0
            seen.clear()
            arrivals.clear()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ready.set()
    server.serve_forever()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _counts(base: str) -> dict:
    return orjson.loads(transport._http().get(base + "/stats").content)


def bare_loop(url: str, count: int) -> float:
    client = transport._http()  # the one deliver() uses
    started = time.perf_counter()
    for _ in range(count):
        delivery_id = str(uuid.uuid4())
        answer = client.post(
            url,
            content=orjson.dumps({**PAYLOAD, "id": delivery_id}),
            headers={"Content-Type": "application/json", "Idempotency-Key": delivery_id},
            timeout=10.0,
        )
        assert 200 <= answer.status_code < 300
    return time.perf_counter() - started


def drain(database_url: str, url: str, count: int, limit: int) -> float:
    engine = create_engine(database_url)
    store = open_store(engine, lambda: datetime.now(UTC))
    ClusterCommands(store).configure_channel(
        ChannelConfigured(
            name="bench",
            kind="webhook",
            target="http://127.0.0.1/***",
            url_encrypted=seal(url, KEY),
            on=["stale"],
        ),
        {"actor": "bench"},
    )
    ProjectionRunner(store).catch_up()
    now = datetime.now(UTC)
    payload = orjson.dumps(PAYLOAD).decode()
    rows = [
        {
            "id": uuid.uuid4(),
            "channel": "bench",
            "trigger": "stale",
            "server": "srv-001",
            "component": "service",
            "source_position": 1,
            "state": "pending",
            "attempts": 0,
            "payload": payload,
            "created_at": now,
        }
        for _ in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(deliveries.insert(), rows)
    sender = Sender(engine, KEY, lambda: datetime.now(UTC))
    started = time.perf_counter()
    sent = 0
    while n := sender.send_due(limit=limit):
        sent += n
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                sa.select(deliveries.c.state, sa.func.count()).group_by(deliveries.c.state)
            ).all()
        )
    engine.dispose()
    assert sent == count and states == {"sent": count}, (sent, states)
    return elapsed


def expiry_to_webhook(database_url: str, url: str, base: str, expiries: int) -> None:
    from cli.processes import spawn_scheduler

    engine = create_engine(database_url)
    store = open_store(engine)
    store.append(
        [
            NewEvent(
                ConfigurationChanged({"stale_timeout_seconds": 5, "heartbeat_frequency_seconds": 1})
            )
        ]
    )
    ClusterCommands(store).configure_channel(
        ChannelConfigured(
            name="latency",
            kind="webhook",
            target="http://127.0.0.1/***",
            url_encrypted=seal(url, KEY),
            on=["stale"],
        ),
        {"actor": "bench"},
    )
    log = tempfile.NamedTemporaryFile(prefix="bench-notify-", suffix=".log", delete=False)  # noqa: SIM115
    child = spawn_scheduler(
        database_url,
        sweep_interval_seconds=1.0,
        name="bench",
        env={"CLUSTERMON_SECRET_KEY": KEY},
        stderr=log,
        stdout=log,
    )
    arrivals: list = []
    try:
        deadline = time.monotonic() + 120
        while b"leading" not in Path(log.name).read_bytes():
            if time.monotonic() > deadline or child.poll() is not None:
                sys.exit(f"the scheduler did not start; see {log.name}")
            time.sleep(0.1)
        _counts(base)
        for batch in range(0, expiries, 10):
            store.append(
                [
                    NewEvent(HeartbeatRecorded(f"svc{i:05}", "service", sent_at=datetime.now(UTC)))
                    for i in range(batch, min(batch + 10, expiries))
                ]
            )
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while len(arrivals) < expiries and time.monotonic() < deadline:
            time.sleep(0.5)
            arrivals += _counts(base)["arrivals"]
    finally:
        child.terminate()
        child.wait(timeout=20)
        engine.dispose()
    assert len(arrivals) == expiries, (len(arrivals), expiries, log.name)
    assert len({(server, component) for server, component, _, _ in arrivals}) == expiries
    latencies = sorted(wall - datetime.fromisoformat(at).timestamp() for _, _, at, wall in arrivals)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"  logical expiry -> webhook received: p50 {p50 * 1000:,.0f} ms  p99 {p99 * 1000:,.0f} ms"
        f"  max {latencies[-1] * 1000:,.0f} ms  (n={len(latencies)}; sweep, follow and send"
        " each run every 1 s)"
    )


@contextlib.contextmanager
def receiving() -> Iterator[tuple[str, str]]:
    """The receiver in a process of its own: (its base URL, the webhook's URL)."""
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    receiver = context.Process(target=_receiver, args=(port, ready), daemon=True)
    receiver.start()
    ready.wait(30)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, base + "/hooks/bench"
    finally:
        receiver.terminate()
        receiver.join(10)


def run(label: str, database_url: str, count: int, limit: int, rounds: int) -> None:
    with receiving() as (base, url):
        bare_loop(url, 200)  # warm: connection, imports
        _counts(base)
        for round_ in range(rounds):
            bare = bare_loop(url, count)
            got_bare = _counts(base)
            sender = drain(database_url, url, count, limit) if round_ == 0 else None
            got_sender = _counts(base) if sender is not None else None
            print(
                f"{label}: bare loop {count / bare:,.0f}/s ({bare * 1e6 / count:,.0f} us each,"
                f" receiver got {got_bare['ids']:,} ids)"
            )
            if sender is not None:
                assert (got_sender["posts"], got_sender["ids"]) == (count, count), got_sender["ids"]
                print(
                    f"{label}: Sender.send_due(limit={limit}) {count / sender:,.0f}/s"
                    f" ({sender * 1e6 / count:,.0f} us each, receiver got {got_sender['ids']:,}"
                    f" ids)  ratio {bare / sender:.2f}x the bare loop"
                )


def latency(label: str, database_url: str, expiries: int) -> None:
    print(f"{label}: expiry -> webhook, {expiries:,} Service components")
    with receiving() as (base, url):
        expiry_to_webhook(database_url, url, base, expiries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["postgres", "sqlite", "both"], default="both")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=100, help="rows claimed per send_due")
    parser.add_argument("--rounds", type=int, default=2, help="bare loops (the first beside)")
    parser.add_argument("--latency", type=int, default=500, help="components (0: skip)")
    args = parser.parse_args()
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrations.upgrade(url)
            run("SQLite", url, args.count, args.limit, args.rounds)
            if args.latency:
                url = f"sqlite:///{folder}/latency.db"
                migrations.upgrade(url)
                latency("SQLite", url, args.latency)
    if args.database in ("postgres", "both"):
        with scratch_database() as url:
            run("PostgreSQL", url, args.count, args.limit, args.rounds)
        if args.latency:
            with scratch_database() as url:
                latency("PostgreSQL", url, args.latency)


if __name__ == "__main__":
    main()
