"""HTTP ingest and read benchmark: gunicorn on PostgreSQL, load from wrk on loopback.

    .venv/bin/python -m bench.api [--seconds 10] [--slice 2] [--workers W] [--threads T]
    .venv/bin/python -m bench.api --compare REV --rounds 2   # + the code of commit REV
    .venv/bin/python -m bench.api --ingest-only --cpu         # + CPU per request (/proc)
    .venv/bin/python -m bench.api --ingest-only --async-commit  # diagnostic: without the fsync

Needs `wrk` (Debian package). Prints, from the same server in the same run:
- GET /healthz requests/s (the baseline: what the HTTP stack alone can do),
- single-heartbeat POSTs from 16 connections: heartbeats/s and the ratio to healthz,
- batches of 100 per POST: heartbeats/s,
- GET /api/v1/cluster with 1,000 servers: latency p50/p99.
Every request must answer 2xx: non-2xx answers are counted and reported.

Healthz and single heartbeats run in slices of --slice seconds, taking turns slice by slice (and
with the servers); then the batches, in the same way. With --compare, a second server runs the
tree of commit REV (extracted with git archive, on a database migrated by its own migrations), so
the baseline and the candidate are measured under the same machine load. --ingest-only skips
the batches and /cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import settings
from bench.common import (
    BENCH_URL,
    TICK,
    database_backends,
    libpq,
    machine_ticks,
    processes,
    scratch_database,
    usage,
)

ROOT = Path(__file__).resolve().parent.parent


def clustermon_of(code: Path) -> list[str]:
    """The `clustermon` command of the tree in `code`, by its own console-script entry (trees
    differ in where it lives: api.cli before the cli/ package)."""
    with open(code / "pyproject.toml", "rb") as f:
        module, function = tomllib.load(f)["project"]["scripts"]["clustermon"].split(":")
    return [sys.executable, "-c", f"from {module} import {function}; {function}()"]


BEAT = {
    "component": "service",
    "os": "Ubuntu",
    "os_version": "24.04",
    "ip": "10.0.0.5",
    "product": "ProGet",
    "product_version": "2025.10",
    "encryption_key_fingerprint": "ab" * 32,
    "status": "ok",
    "verification": "verified",
    "sent_at": "2026-11-27T10:00:00Z",
}

# Each wrk thread plays its own agents (server names t<thread>-n...), as real servers each send
# their own heartbeats: two threads never post the same component at the same moment. (Names
# shared by both threads in lock-step made nearly every group a version conflict between the
# two gunicorn workers: a worst case no cluster of distinct servers produces.)
# The requests are built once per thread in init() and then only cycled through: building each
# one in Lua (gsub + wrk.format) cost wrk ~20 us of CPU per request, on the same two cores as
# the server, where a healthz request costs wrk nothing to build.
LUA_POST = """
local counter = 0
local threads = 0
local requests = {}
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
%s
local template = [[%s]]
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer %s"
  for c = 1, COUNT do
    local body = string.gsub(template, "SERVER", PREFIX(c))
    requests[c] = wrk.format(nil, nil, nil, body)
  end
end
request = function()
  counter = counter %% COUNT + 1
  return requests[counter]
end
"""

LUA_GET = """
wrk.headers["Authorization"] = "Bearer %s"
"""


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script or "")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "rps": rps,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
        "p50": latency.get("50"),
        "p99": latency.get("99"),
    }


PHASES = ("healthz", "single", "batch")


def cpu_sample(server: Server) -> dict:
    """CPU used so far by the server's processes and by its database's PostgreSQL backends,
    and the commits of that database (Linux /proc and pg_stat_database)."""
    found = processes()
    ours, grown = {server.pid}, True
    while grown:  # the server's process and its descendants (gunicorn's workers)
        grown = False
        for pid, (parent, _) in found.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grown = True
    backends = database_backends(server.database, found)
    with psycopg.connect(libpq(BENCH_URL), autocommit=True) as conn:
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (server.database,)
        ).fetchone()[0]
    return {
        "server": [sum(x) for x in zip(*(usage(p) for p in ours), strict=True)],
        "postgres": [sum(x) for x in zip(*(usage(p) for p in backends or {0}), strict=True)],
        "commits": commits,
        "machine": machine_ticks(),
    }


def cpu_report(phase: str, samples: list[tuple[dict, dict, float]]) -> str:
    """Per request of one phase: CPU of the server and of PostgreSQL, the server's context
    switches, and requests per commit; and the share of the machine's time left idle (idle +
    iowait of /proc/stat), which healthz leaves at ~0%."""
    requests = sum(n for _, _, n in samples)
    per = {
        key: [sum(after[key][i] - before[key][i] for before, after, _ in samples) for i in range(3)]
        for key in ("server", "postgres")
    }
    commits = sum(after["commits"] - before["commits"] for before, after, _ in samples)
    idle, ticks = (
        sum(after["machine"][i] - before["machine"][i] for before, after, _ in samples)
        for i in (0, 1)
    )
    us = 1e6 / TICK / requests
    text = (
        f"    {phase:8s} CPU per request: server {per['server'][0] * us:4.0f} us user"
        f" + {per['server'][1] * us:3.0f} us system, {per['server'][2] / requests:4.1f} context"
        f" switches; PostgreSQL {(per['postgres'][0] + per['postgres'][1]) * us:4.0f} us;"
        f" machine idle {100 * idle / ticks:4.1f}%"
    )
    return text + (f"; {requests / commits:.1f} requests per commit" if commits else "")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def combined(parts: list[dict]) -> dict:
    """One phase's slices (equal durations) as one: mean rate, median of the slices' medians,
    worst of their 99th percentiles."""
    return {
        "rps": statistics.mean(p["rps"] for p in parts),
        "non2xx": sum(p["non2xx"] for p in parts),
        "socket_errors": " ".join(p["socket_errors"] for p in parts if p["socket_errors"]),
        "p50": f"{statistics.median(_ms(p['p50']) for p in parts):.2f}ms",
        "p99": f"{max(_ms(p['p99']) for p in parts):.2f}ms",
    }


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def post(url: str, token: str, body: dict) -> None:
    request = urllib.request.Request(
        url + "/api/v1/heartbeats",
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).read()


@dataclass
class Server:
    name: str
    url: str
    agent: str
    viewer: str
    pid: int | None = None  # the server's main process (gunicorn's master)
    database: str | None = None  # its scratch database's name


@contextlib.contextmanager
def serving(
    name: str, code: Path, port: int, env_extra: dict, *, async_commit: bool = False
) -> Iterator[Server]:
    """`clustermon serve` of the code in `code` on a scratch database migrated by that code.
    `async_commit`: the database commits without waiting for the WAL flush (a diagnostic of
    what the fsync costs; clustermon never runs so: a 202 must be durable)."""
    with (
        scratch_database(BENCH_URL, migrate=False) as db,
        tempfile.TemporaryDirectory() as metrics_dir,
    ):
        env = {
            **os.environ,
            **env_extra,
            "CLUSTERMON_DATABASE_URL": db,
            "CLUSTERMON_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            "CLUSTERMON_NEW_SERVERS_PER_HOUR": "0",  # thousands of agents join at once
        }

        clustermon = clustermon_of(Path(code))

        def cli(*args: str) -> str:
            done = subprocess.run(
                [*clustermon, *args], env=env, cwd=code, capture_output=True, text=True, check=True
            )
            return done.stdout.strip()

        cli("db", "upgrade")
        if async_commit:
            with psycopg.connect(libpq(BENCH_URL), autocommit=True) as admin:
                database = db.rsplit("/", 1)[1]
                admin.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
        agent = cli("token", "create", "--role", "agent", "--name", "bench")
        viewer = cli("token", "create", "--role", "viewer", "--name", "bench-viewer")
        server = subprocess.Popen(
            [*clustermon, "serve"],
            env=env,
            cwd=code,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url)
            yield Server(name, url, agent, viewer, server.pid, db.rsplit("/", 1)[1])
        finally:
            server.terminate()
            server.wait(timeout=20)


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """The tree of commit `rev` in a temporary directory (git archive: the working tree and
    its index are not touched)."""
    with tempfile.TemporaryDirectory(prefix="clustermon-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


SINGLE = orjson.dumps({**BEAT, "server": "SERVER"}).decode()
BATCH = orjson.dumps(
    {"heartbeats": [{**BEAT, "server": f"SERVER{i:02d}"} for i in range(100)]}
).decode()
# wrk runs 2 threads; each plays 500 servers (t0-n000..t0-n499, t1-n000..t1-n499): one
# heartbeat per request, or blocks of 100 of them (five blocks per thread).
ONE = 'COUNT = 500 PREFIX = function(c) return string.format("t%d-n%03d", tid, c - 1) end'
BLOCK = 'COUNT = 5 PREFIX = function(c) return "t" .. tid .. "-n" .. (c - 1) end'
NAMES = [f"t{thread}-n{i:03d}" for thread in (0, 1) for i in range(500)]


def cluster_phase(server: Server, seconds: int) -> tuple[int, dict]:
    """GET /cluster with exactly 1,000 servers (the ingest phases' names), each with both
    components."""
    for start in range(0, 1000, 250):
        beats = [
            {**BEAT, "server": name, "component": component}
            for name in NAMES[start : start + 250]
            for component in ("web", "service")
        ]
        post(server.url, server.agent, {"heartbeats": beats})
    request = urllib.request.Request(
        server.url + "/api/v1/cluster", headers={"Authorization": f"Bearer {server.viewer}"}
    )
    with urllib.request.urlopen(request) as response:
        count = orjson.loads(response.read())["server_count"]
    return count, wrk(server.url + "/api/v1/cluster", seconds, 2, LUA_GET % server.viewer)


def report(name: str, phases: dict) -> None:
    health, singles, batches = phases["healthz"], phases["single"], phases.get("batch")
    print(f"  {name}")
    print(f"    GET /healthz                {health['rps']:10.0f} req/s")
    print(
        f"    POST 1 heartbeat/request    {singles['rps']:10.0f} heartbeats/s"
        f"  = {singles['rps'] / health['rps']:.2f}x healthz (target >= 0.5)"
        f"  p50 {singles['p50']} p99 {singles['p99']}"
    )
    if batches:
        print(
            f"    POST 100 heartbeats/request {batches['rps'] * 100:10.0f} heartbeats/s"
            f"  (target >= 20,000)  p50 {batches['p50']} p99 {batches['p99']}"
        )
    for phase, result in phases.items():
        if result["non2xx"] or result["socket_errors"]:
            print(f"    {phase}: non-2xx={result['non2xx']} {result['socket_errors']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="default: serve's default")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per worker where serve runs threaded workers (trees before its gevent"
        " workers on PostgreSQL); default: serve's default",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also serve commit REV (or the tree in directory REV) with its own code and"
        " migrations, and alternate the phases between both servers",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--slice", type=int, default=2, help="seconds of one turn (default 2)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="also print CPU per request (server processes, PostgreSQL backends), the server's"
        " context switches per request and requests per commit, from /proc (Linux)",
    )
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic: the scratch databases commit without waiting for the WAL flush"
        " (synchronous_commit=off), to measure what the fsync of each commit costs",
    )
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="only healthz and single heartbeats (no batches, no /cluster): a quicker comparison",
    )
    args = parser.parse_args()

    env_extra = {
        f"CLUSTERMON_{name}": str(value)
        for name, value in (("WORKERS", args.workers), ("THREADS", args.threads))
        if value is not None
    }
    workers = args.workers or settings.DEFAULTS["WORKERS"]
    threads = args.threads or settings.DEFAULTS["THREADS"]
    print(
        f"workers={workers} (gevent; threaded trees: x {threads} threads), {args.seconds}s per"
        " phase, 16 connections"
        f" (2 for /cluster), load average before: " + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )
    port = 18000 + os.getpid() % 1000
    with contextlib.ExitStack() as stack:
        serve = functools.partial(serving, env_extra=env_extra, async_commit=args.async_commit)
        servers = [stack.enter_context(serve("candidate (working tree)", ROOT, port))]
        if args.compare:
            if Path(args.compare).is_dir():  # a tree prepared by hand
                code = Path(args.compare)
            else:
                code = stack.enter_context(checkout(args.compare))
            label = f"baseline {args.compare}"
            servers.insert(0, stack.enter_context(serve(label, code, port + 1)))
        slices = max(1, args.seconds // args.slice)
        for round_ in range(1, args.rounds + 1):
            # The machine's speed drifts within seconds here (a shared VM: steal time), so the
            # phases and the servers take turns slice by slice and each phase's slices are
            # summed: healthz and the heartbeats see the same weather.
            # Batches run after the healthz/single turns, not among them: the hundreds of
            # thousands of rows they insert set off autovacuum and checkpoint work that ran
            # on into the next healthz slice and lowered the baseline (the ratio looked better).
            turns = [PHASES[:2]] if args.ingest_only else [PHASES[:2], PHASES[2:]]
            runs = {s.name: {p: [] for turn in turns for p in turn} for s in servers}
            usage = {s.name: {p: [] for turn in turns for p in turn} for s in servers}
            for turn in turns:
                for _ in range(slices):
                    for phase in turn:
                        for server in servers:
                            before = cpu_sample(server) if args.cpu else None
                            result = ingest_phases_one(server, phase, args.slice)
                            runs[server.name][phase].append(result)
                            if args.cpu:
                                requests = result["rps"] * args.slice
                                usage[server.name][phase].append(
                                    (before, cpu_sample(server), requests)
                                )
            results = {
                name: {phase: combined(parts) for phase, parts in phases.items()}
                for name, phases in runs.items()
            }
            print(
                f"round {round_} (load average "
                + " ".join(f"{x:.1f}" for x in os.getloadavg())
                + ")"
            )
            for server in servers:
                report(server.name, results[server.name])
                for phase, samples in usage[server.name].items() if args.cpu else ():
                    print(cpu_report(phase, samples))
        for server in servers if not args.ingest_only else ():
            count, view = cluster_phase(server, args.seconds)
            print(
                f"  {server.name}: GET /api/v1/cluster ({count} servers) {view['rps']:7.0f} req/s"
                f"  p50 {view['p50']} p99 {view['p99']}"
            )


def ingest_phases_one(server: Server, phase: str, seconds: int) -> dict:
    if phase == "healthz":
        return wrk(server.url + "/healthz", seconds, 16)
    prefix, body = (ONE, SINGLE) if phase == "single" else (BLOCK, BATCH)
    return wrk(
        server.url + "/api/v1/heartbeats", seconds, 16, LUA_POST % (prefix, body, server.agent)
    )


if __name__ == "__main__":
    main()
