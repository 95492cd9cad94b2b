"""CPU cost of one request through the real WSGI app (no HTTP server, no wrk): what a gunicorn
thread spends in Python per request, auth, metrics, validation, decision, append and response
included. Sequential requests on a scratch PostgreSQL database.

    .venv/bin/python -m bench.api_cpu [--requests 400] [--profile single|batch|healthz]

Prints process CPU time per request (all threads: the group committer's included) and the
ratio against GET /healthz measured in the same run. `--profile` prints a cProfile of that
kind of request, sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import BEAT
from bench.common import BENCH_URL, scratch_database


def environ(path: str, method: str = "GET", body: bytes = b"", token: str | None = None):
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    if body:
        env["CONTENT_TYPE"] = "application/json"
        env["CONTENT_LENGTH"] = str(len(body))
    if token:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return env


def call(app, make_env) -> int:
    status = []
    body = app(make_env(), lambda s, h, exc_info=None: status.append(s))
    for _chunk in body:
        pass
    getattr(body, "close", lambda: None)()
    return int(status[0].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--profile", choices=["healthz", "single", "batch"])
    parser.add_argument("--lines", type=int, default=45)
    args = parser.parse_args()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))

    from api.app import create_app
    from api.services import services
    from api.tokens import create_token

    with scratch_database(BENCH_URL) as db:
        app = create_app({"DATABASE_URL": db, "NEW_SERVERS_PER_HOUR": 0})
        svc = services(app)
        token = create_token(svc.engine, svc.clock, "bench", "agent")
        counter = iter(range(10**9))

        def single():
            body = orjson.dumps({**BEAT, "server": f"n{next(counter) % 1000:03d}"})
            return environ("/api/v1/heartbeats", "POST", body, token)

        def batch():
            n = next(counter) % 10
            beats = [{**BEAT, "server": f"n{n}{i:02d}"} for i in range(100)]
            return environ("/api/v1/heartbeats", "POST", orjson.dumps({"heartbeats": beats}), token)

        kinds = {
            "healthz": (lambda: environ("/healthz"), args.requests * 5),
            "single": (single, args.requests),
            # The same request through the Flask view, around api/fastpath.py.
            "single-flask": (single, args.requests),
            "batch": (batch, max(20, args.requests // 10)),
        }
        wsgi = {"single-flask": app.wsgi_app.flask}
        results = {}
        for name, (make, n) in kinds.items():
            serve = wsgi.get(name, app)
            for _ in range(20):  # warm up: caches, prepared plans, pools
                assert call(serve, make) < 300
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(n):
                status = call(serve, make)
                assert status < 300, status
            results[name] = (
                (time.process_time() - cpu) / n * 1e6,
                (time.perf_counter() - wall) / n * 1e6,
            )
        base = results["healthz"][0]
        for name, (cpu, wall) in results.items():
            per_beat = cpu / 100 if name == "batch" else cpu
            print(
                f"{name:12s} CPU {cpu:9.0f} us/request ({per_beat:7.1f} us/heartbeat)"
                f"  wall {wall:9.0f} us  = {cpu / base:6.1f}x healthz CPU"
            )
        if args.profile:
            make, n = kinds[args.profile]
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                call(app, make)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(args.lines)
            stats.sort_stats("tottime").print_stats(args.lines)
        svc.engine.dispose()


if __name__ == "__main__":
    main()
