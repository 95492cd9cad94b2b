"""Heartbeat latency while viewers run expensive reads, against `clustermon serve`.

    .venv/bin/python -m bench.expensive_reads [--events 100000] [--seconds 5] [--baseline REV]
                                              [--sqlite]

A scratch database (beside CLUSTERMON_BENCH_POSTGRES_URL; --sqlite: a SQLite file, served by
gthread workers instead of gevent ones) gets `--events` heartbeats of 1,000 components, each
beating every 30 s (100,000 events: 50 minutes, ending a minute ago). Then, for each server in
turn (the tree of commit --baseline, if given, served with its own code; with --lifted, the
working tree with the limits lifted, CLUSTERMON_EXPENSIVE_READS_PER_*=0; the working tree as
configured):
- idle: 4 connections each send one heartbeat every 40 ms (100/s in all) for --seconds;
- 1 token: the same, while 12 clients using one viewer token ask for a what-if over the last
  quarter of the log at once, each until it is answered (again after Retry-After on a 429);
- 12 tokens: the same with one viewer token per client;
- again: 12 tokens once more.
Before each phase but the last the snapshots are deleted: each burst is the first after `serve`
started without a scheduler (the worst case); the last finds those the one before kept. Prints
per phase the heartbeat latency p50/p99, how long the 12 what-ifs took in all and each, the
429s on the way, and the server's CPU (its processes, from /proc). Keep the run under 2
minutes: with --baseline it takes ~60 s on PostgreSQL, ~85 s with --sqlite, on 2 cores (each
server more, --lifted, ~25 s and ~40 s).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import orjson
import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import BEAT, checkout, clustermon_of, wait_up
from bench.common import (
    STREAMS,
    TICK,
    heartbeat,
    libpq,
    processes,
    scratch_database,
    stream_parts,
    usage,
)
from eventstore import create_engine, open_store, utc_now
from eventstore.store import NewEvent
from eventstore.tables import UTCDateTime

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 12
SENDERS, BEAT_INTERVAL = 4, 0.040
PER_COMMIT = 100
COPY = (
    "COPY events (event_id, stream, version, type, schema_version, data, metadata,"
    " occurred_at, recorded_at) FROM STDIN"
)


def fill(url: str, count: int, start: datetime, end: datetime) -> None:
    """`count` heartbeats of 500 servers (web + service), PER_COMMIT per recorded_at, spread
    evenly over [start, end]: COPY on PostgreSQL, the store's append on SQLite."""
    step = (end - start) / max(1, count // PER_COMMIT)
    if url.startswith("sqlite"):
        store = open_store(create_engine(url))
        for lo in range(0, count, PER_COMMIT):
            stamp = start + step * (lo // PER_COMMIT)
            batch = [NewEvent(heartbeat(i, stamp)) for i in range(lo, min(count, lo + PER_COMMIT))]
            store.append(batch, recorded_at=stamp)
        store.engine.dispose()
        return
    key = "3f" * 32
    rows = []
    for i in range(count):
        server, component = stream_parts(i)
        at = (start + step * (i // PER_COMMIT)).isoformat()
        data = (
            f'{{"server":"{server}","component":"{component}","sent_at":"{at}","status":"ok",'
            f'"verification":"verified","os":"Ubuntu","os_version":"24.04","ip":"10.0.0.1",'
            f'"product":"ProGet","product_version":"2025.10",'
            f'"encryption_key_fingerprint":"{key}","message":null}}'
        )
        rows.append(
            f"{uuid.uuid4()}\t{server}/{component}\t{i // STREAMS + 1}\tHeartbeatRecorded\t2\t"
            f'{data}\t{{"actor":"agent"}}\t{at}\t{at}\n'
        )
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(COPY) as copy:
            copy.write("".join(rows))
        conn.execute("VACUUM ANALYZE events")


# The columns every tree's token table has (trees add columns with their migrations).
TOKENS = sa.table(
    "api_tokens",
    sa.column("name"),
    sa.column("role"),
    sa.column("token_hash"),
    sa.column("created_at", UTCDateTime()),
)


def make_tokens(url: str, role: str, count: int) -> list[str]:
    """Tokens written straight into the token table (a CLI call each would cost a second)."""
    tokens = [f"cm_{role}_{secrets.token_urlsafe(32)}" for _ in range(count)]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for i, token in enumerate(tokens):
                digest = hashlib.sha256(token.encode()).hexdigest()
                row = {"name": f"bench-{role}-{i}", "role": role, "token_hash": digest}
                conn.execute(TOKENS.insert().values(**row, created_at=utc_now()))
    finally:
        engine.dispose()
    return tokens


@contextlib.contextmanager
def serving(code: Path, url: str, port: int, env_extra: dict) -> Iterator[int]:
    """`clustermon serve` of the tree in `code` on `url`; yields its pid. Its log is printed
    if it does not start, and when a worker was killed (gunicorn's timeout)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics_dir = Path(tmp) / "metrics"
        metrics_dir.mkdir()
        log_path = Path(tmp) / "serve.log"
        env = {
            **os.environ,
            **env_extra,
            "CLUSTERMON_DATABASE_URL": url,
            "CLUSTERMON_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [*clustermon_of(code), "serve"],
                env=env,
                cwd=code,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            try:
                wait_up(f"http://127.0.0.1:{port}")
            except SystemExit:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise
            yield server.pid
        finally:
            server.terminate()
            server.wait(timeout=20)
            killed = [line for line in log_path.read_text().splitlines() if "TIMEOUT" in line]
            for line in killed:
                print(f"    {line}")


def forget_snapshots(url: str) -> None:
    """Each burst starts as the first one after a start without a scheduler: no snapshot."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM projection_snapshots"))
    finally:
        engine.dispose()


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the server and its workers."""
    found, ours, grown = processes(), {pid}, True
    while grown:
        grown = False
        for child, (parent, _) in found.items():
            if parent in ours and child not in ours:
                ours.add(child)
                grown = True
    return sum(sum(usage(p)[:2]) for p in ours) / TICK


def send_heartbeats(port: int, token: str, name: str, stop: threading.Event, out: list) -> None:
    """One keep-alive connection sending one heartbeat every BEAT_INTERVAL; latencies (ms)."""
    body = orjson.dumps({**BEAT, "server": name})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn.request("POST", "/api/v1/heartbeats", body, headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 202, response.status
        except (http.client.HTTPException, OSError):  # 30 s without an answer, or a worker
            conn.close()  # killed by gunicorn's timeout: counted at the time it took
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out.append((time.monotonic() - started) * 1000)
        next_at += BEAT_INTERVAL
        stop.wait(max(0.0, next_at - time.monotonic()))
    conn.close()


def ask_what_if(url: str, token: str, out: dict) -> None:
    """Ask for a what-if until it is answered: after a 429, again after its Retry-After."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
            out["answered"].append(time.monotonic() - started)
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                raise
            out["refused"] += 1
            # Closed before waiting: gunicorn 27's gthread worker lingers up to 2 s on its
            # event loop for the client to close a connection it ends, and an HTTPError
            # keeps its socket open; all of that worker's heartbeats waited meanwhile.
            exc.close()
            time.sleep(float(exc.headers["Retry-After"]))
        except (http.client.HTTPException, OSError):  # a worker killed by gunicorn's timeout
            out["failed"] += 1
            return


def phase(port: int, agent: str, what_if: str | None, viewers: list[str], seconds: float):
    """Heartbeats for `seconds` (idle), or until each of CLIENTS what-ifs asked at once was
    answered; (heartbeat p50, p99, what-if answers, seconds)."""
    stop = threading.Event()
    latencies: list[float] = []
    answers: dict = {"answered": [], "refused": 0, "failed": 0}
    senders = [
        threading.Thread(target=send_heartbeats, args=(port, agent, f"bench-{i}", stop, latencies))
        for i in range(SENDERS)
    ]
    clients = [
        threading.Thread(target=ask_what_if, args=(what_if, viewers[i], answers))
        for i in range(CLIENTS if what_if is not None else 0)
    ]
    began = time.monotonic()
    for thread in senders + clients:
        thread.start()
    if clients:
        for thread in clients:
            thread.join()
    else:
        time.sleep(seconds)  # the phase's length: the senders measure meanwhile
    stop.set()
    for thread in senders:
        thread.join()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99, answers, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--baseline", metavar="REV", help="also serve commit REV's tree first")
    parser.add_argument(
        "--sqlite", action="store_true", help="a SQLite file (gthread workers), not PostgreSQL"
    )
    parser.add_argument(
        "--lifted", action="store_true", help="also serve the working tree with the limits lifted"
    )
    args = parser.parse_args()
    port = 19000 + os.getpid() % 1000
    now = datetime.now(UTC)
    end = now - timedelta(minutes=1)
    start = end - timedelta(seconds=30 * args.events / 1000)  # each component every 30 s
    since = start + (end - start) * 3 / 4
    query = f"stale_timeout_seconds=120&since={quote(since.isoformat())}"
    with contextlib.ExitStack() as stack:
        if args.sqlite:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/bench.db"
        else:
            url = stack.enter_context(scratch_database(migrate=False))
        servers = []
        if args.baseline:
            baseline = stack.enter_context(checkout(args.baseline))
            servers.append((f"baseline {args.baseline}", baseline, {}))
        # Migrated by the oldest tree (a newer one upgrades it when it serves).
        first = servers[0][1] if servers else ROOT
        env = {**os.environ, "CLUSTERMON_DATABASE_URL": url}
        subprocess.run([*clustermon_of(first), "db", "upgrade"], env=env, cwd=first, check=True)
        began = time.monotonic()
        fill(url, args.events, start, end)
        print(f"{args.events:,} heartbeats since {start:%H:%M} in {time.monotonic() - began:.0f} s")
        agent = make_tokens(url, "agent", 1)[0]
        one = make_tokens(url, "viewer", 1) * CLIENTS
        twelve = make_tokens(url, "viewer", CLIENTS)
        lifted = {
            "CLUSTERMON_EXPENSIVE_READS_PER_TOKEN": "0",
            "CLUSTERMON_EXPENSIVE_READS_PER_WORKER": "0",
        }
        if args.lifted:
            servers.append(("working tree, limits lifted", ROOT, lifted))
        servers.append(("working tree, default limits", ROOT, {}))
        print(
            f"what-if: since {since:%H:%M} (the last quarter of the log), {CLIENTS} clients;"
            f" heartbeats: {SENDERS} connections x {1 / BEAT_INTERVAL:.0f}/s;"
            f" {args.seconds:.0f} s per phase; load average {os.getloadavg()[0]:.1f}"
        )
        for name, code, env in servers:
            with serving(code, url, port, env) as pid:
                what_if = f"http://127.0.0.1:{port}/api/v1/audit/what-if?{query}"
                print(f"  {name}")
                phases = [
                    ("idle", None, True),
                    ("1 token", one, True),
                    ("12 tokens", twelve, True),
                    ("again", twelve, False),  # with the snapshots the bursts before kept
                ]
                for label, viewers, cold in phases:
                    if cold:
                        forget_snapshots(url)
                    cpu = server_cpu(pid)
                    p50, p99, answers, elapsed = phase(
                        port, agent, what_if if viewers else None, viewers or [], args.seconds
                    )
                    cpu = (server_cpu(pid) - cpu) / elapsed
                    line = (
                        f"    {label:9s} heartbeat p50 {p50:6.1f} ms  p99 {p99:7.1f} ms"
                        f"  server CPU {cpu:.2f} cores"
                    )
                    if viewers:
                        done = answers["answered"]
                        line += (
                            f"  {len(done)} what-ifs answered in {elapsed:.1f} s (each"
                            f" {statistics.median(done):.1f} s p50, {max(done):.1f} s max),"
                            f" {answers['refused']} 429s on the way"
                        )
                        if answers["failed"]:
                            line += f", {answers['failed']} FAILED (connection lost)"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
