"""HTTP ingest and read benchmark: gunicorn on PostgreSQL, load from wrk on loopback.

    .venv/bin/python -m bench.api [--seconds 10] [--workers W] [--threads T]

Needs `wrk` (Debian package). Prints, from the same server in the same run:
- GET /healthz requests/s (the baseline: what the HTTP stack alone can do),
- single-heartbeat POSTs from 16 connections: heartbeats/s and the ratio to healthz,
- batches of 100 per POST: heartbeats/s,
- GET /api/v1/cluster with 1,000 servers: latency p50/p99.
Every request must answer 2xx: non-2xx answers are counted and reported.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import settings
from bench.common import BENCH_URL, scratch_database

CLI = [sys.executable, "-c", "from api.cli import main; main()"]

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

LUA_POST = """
local counter = 0
%s
local template = [[%s]]
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  counter = counter + 1
  -- 1,000 server names shared by both phases: n000..n999
  local body = string.gsub(template, "SERVER", PREFIX(counter))
  return wrk.format(nil, nil, nil, body)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None, help="default: serve's default")
    parser.add_argument("--threads", type=int, default=None, help="default: serve's default")
    args = parser.parse_args()

    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with scratch_database(BENCH_URL) as db, tempfile.TemporaryDirectory() as metrics_dir:
        port = 18000 + os.getpid() % 1000
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "CLUSTERMON_DATABASE_URL": db,
            "CLUSTERMON_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        for name, value in (("WORKERS", args.workers), ("THREADS", args.threads)):
            if value is not None:
                env[f"CLUSTERMON_{name}"] = str(value)
        agent = subprocess.run(
            [*CLI, "token", "create", "--role", "agent", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        viewer = subprocess.run(
            [*CLI, "token", "create", "--role", "viewer", "--name", "bench-viewer"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        server = subprocess.Popen(
            [*CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_up(url)
            single = orjson.dumps({**BEAT, "server": "SERVER"}).decode()
            batch = orjson.dumps(
                {"heartbeats": [{**BEAT, "server": f"SERVER{i:02d}"} for i in range(100)]}
            ).decode()
            one = 'PREFIX = function(c) return string.format("n%03d", c % 1000) end'
            block = 'PREFIX = function(c) return "n" .. (c % 10) end'

            health = wrk(url + "/healthz", args.seconds, 16)
            singles = wrk(
                url + "/api/v1/heartbeats", args.seconds, 16, LUA_POST % (one, single, agent)
            )
            batches = wrk(
                url + "/api/v1/heartbeats", args.seconds, 16, LUA_POST % (block, batch, agent)
            )

            # GET /cluster with exactly 1,000 servers (n000..n999), each with both components.
            for start in range(0, 1000, 250):
                beats = [
                    {**BEAT, "server": f"n{i:03d}", "component": component}
                    for i in range(start, start + 250)
                    for component in ("web", "service")
                ]
                post(url, agent, {"heartbeats": beats})
            with urllib.request.urlopen(
                urllib.request.Request(
                    url + "/api/v1/cluster", headers={"Authorization": f"Bearer {viewer}"}
                )
            ) as response:
                count = orjson.loads(response.read())["server_count"]
            view = wrk(url + "/api/v1/cluster", args.seconds, 2, LUA_GET % viewer)
        finally:
            server.terminate()
            server.wait(timeout=20)

    workers = args.workers or settings.DEFAULTS["WORKERS"]
    threads = args.threads or settings.DEFAULTS["THREADS"]
    print(
        f"workers={workers} x threads={threads}, {args.seconds}s per phase,"
        f" 16 connections (2 for /cluster), load average before: {load_before}"
    )
    print(f"GET /healthz                  {health['rps']:10.0f} req/s")
    print(
        f"POST 1 heartbeat/request      {singles['rps']:10.0f} heartbeats/s"
        f"  = {singles['rps'] / health['rps']:.2f}x healthz (target >= 0.5)"
        f"  p50 {singles['p50']} p99 {singles['p99']}"
    )
    print(
        f"POST 100 heartbeats/request   {batches['rps'] * 100:10.0f} heartbeats/s"
        f"  (target >= 20,000)  p50 {batches['p50']} p99 {batches['p99']}"
    )
    print(
        f"GET /api/v1/cluster ({count} servers) {view['rps']:7.0f} req/s"
        f"  p50 {view['p50']} p99 {view['p99']}"
    )
    for name, result in (
        ("healthz", health),
        ("single", singles),
        ("batch", batches),
        ("cluster", view),
    ):
        if result["non2xx"] or result["socket_errors"]:
            print(f"  {name}: non-2xx={result['non2xx']} {result['socket_errors']}")


if __name__ == "__main__":
    main()
