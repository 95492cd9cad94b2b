"""The deployment a soak runs against: a fresh database, `clustermon serve` instances and
`clustermon scheduler` processes on it, started as a user would (the console commands), plus
the tokens and the cluster configuration.

PostgreSQL: a scratch database beside CLUSTERMON_BENCH_POSTGRES_URL (bench/common.py), dropped
at the end. SQLite: a file in a temporary directory. Every child's output goes to a log file in
`log_dir`, kept when the soak fails so that the reason can be read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.api import wait_up
from bench.common import BENCH_URL, scratch_database
from cli.processes import CLUSTERMON

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


def _die_with_us() -> None:
    """In the child before exec: SIGTERM when the soak dies, even by SIGKILL (Linux), so no
    server outlives an interrupted soak. (Schedulers have --exit-with-parent for the same.)"""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Deployment:
    database: str  # "postgres" or "sqlite"
    database_url: str
    database_name: str | None  # PostgreSQL's, for its backends in /proc
    urls: list[str]
    agent: str
    viewer: str
    admin: str
    log_dir: Path
    serve: list[subprocess.Popen] = field(default_factory=list)
    schedulers: list[subprocess.Popen] = field(default_factory=list)
    products: list[subprocess.Popen] = field(default_factory=list)  # fake /health servers

    def configure(self, settings: dict) -> dict:
        """PUT /api/v1/cluster/configuration as the admin; the new configuration."""
        return self.put("/api/v1/cluster/configuration", settings)

    def put(self, path: str, body: dict) -> dict:
        """PUT `body` at `path` as the admin; the answer."""
        request = urllib.request.Request(
            self.urls[0] + path,
            data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"},
            method="PUT",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return orjson.loads(response.read())

    def get(self, path: str, timeout: float = 10) -> dict:
        request = urllib.request.Request(
            self.urls[0] + path, headers={"Authorization": f"Bearer {self.viewer}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:  # /readyz answers 503 with a body when lagging
            return orjson.loads(exc.read())

    def alive(self) -> list[str]:
        """What died: a soak whose server crashed must say so, not report good latencies."""
        return [
            f"{kind}{n} (exit {child.returncode})"
            for kind, children in (("serve", self.serve), ("scheduler", self.schedulers))
            for n, child in enumerate(children, 1)
            if child.poll() is not None
        ]


@contextlib.contextmanager
def _database(kind: str) -> Iterator[tuple[str, str | None]]:
    if kind == "postgres":
        with scratch_database(BENCH_URL, migrate=False) as url:
            yield url, url.rsplit("/", 1)[1]
    else:
        with tempfile.TemporaryDirectory(prefix="clustermon-soak-db-") as folder:
            yield f"sqlite:///{folder}/clustermon.db", None


@contextlib.contextmanager
def deployed(
    database: str,
    *,
    serve_instances: int = 1,
    schedulers: int = 1,
    sweep_interval: float = 1.0,
    workers: int | None = None,
    threads: int | None = None,
    port: int = 18800,
    settings: dict[str, str] | None = None,
    log_dir: Path,
) -> Iterator[Deployment]:
    """Migrate, create tokens, start the servers (ports port, port+1, ...) and the schedulers,
    wait until they answer and one scheduler leads; stop them all on exit. `settings`: more
    process settings, by their name without the CLUSTERMON_ prefix. The caller's own
    CLUSTERMON_* variables are not passed on: a soak runs on what its command line says."""
    with _database(database) as (url, name), contextlib.ExitStack() as stack:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CLUSTERMON_") and key != "PROMETHEUS_MULTIPROC_DIR"
        }
        env["CLUSTERMON_DATABASE_URL"] = url
        env["CLUSTERMON_SWEEP_INTERVAL_SECONDS"] = str(sweep_interval)
        for setting, value in (("WORKERS", workers), ("THREADS", threads)):
            if value is not None:
                env[f"CLUSTERMON_{setting}"] = str(value)
        env.update({f"CLUSTERMON_{name}": value for name, value in (settings or {}).items()})

        def cli(*args: str) -> str:
            done = subprocess.run(
                [*CLUSTERMON, *args], env=env, cwd=ROOT, capture_output=True, text=True
            )
            if done.returncode:
                raise SystemExit(f"clustermon {' '.join(args)} failed:\n{done.stderr}")
            return done.stdout.strip()

        cli("db", "upgrade")
        tokens = {
            role: cli("token", "create", "--role", role, "--name", f"soak-{role}")
            for role in ("agent", "viewer", "admin")
        }
        deployment = Deployment(
            database, url, name, [], tokens["agent"], tokens["viewer"], tokens["admin"], log_dir
        )

        def child(command: list[str], log_name: str, extra_env: dict) -> subprocess.Popen:
            log = stack.enter_context(open(log_dir / log_name, "wb"))
            return subprocess.Popen(
                command,
                env={**env, **extra_env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_us,
                start_new_session=True,  # Ctrl-C stops the soak, which stops them in order
            )

        try:
            for n in range(1, serve_instances + 1):
                metrics = stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-metrics-"))
                instance_port = port + n - 1
                deployment.serve.append(
                    child(
                        [*CLUSTERMON, "serve", "--port", str(instance_port)],
                        f"serve{n}.log",
                        {"PROMETHEUS_MULTIPROC_DIR": metrics},
                    )
                )
                deployment.urls.append(f"http://127.0.0.1:{instance_port}")
                wait_up(deployment.urls[-1])
            for n in range(1, schedulers + 1):
                deployment.schedulers.append(
                    child(
                        [*CLUSTERMON, "scheduler", "--exit-with-parent", str(os.getpid())],
                        f"scheduler{n}.log",
                        {"CLUSTERMON_SCHEDULER_NAME": f"soak-scheduler-{n}"},
                    )
                )
            _wait_for_leader(deployment)
            yield deployment
        finally:
            _stop([*deployment.serve, *deployment.schedulers, *deployment.products])


def _wait_for_leader(deployment: Deployment, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    logs = [
        deployment.log_dir / f"scheduler{n}.log" for n in range(1, 1 + len(deployment.schedulers))
    ]
    while not any(b": leading" in log.read_bytes() for log in logs):
        if time.monotonic() > deadline or deployment.alive():
            raise SystemExit(f"no scheduler leads; see {deployment.log_dir}")
        time.sleep(0.2)


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM all, then wait; SIGKILL what is still there after 30 s (gunicorn's graceful
    timeout: the load generator has closed its streams before this)."""
    for process in children:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 30
    for process in children:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_polled_targets(deployment: Deployment, count: int, period: float) -> None:
    """`count` fake product servers answering GET /health (collector/fake_product.py, one
    asyncio process of their own, so they share neither the load generator's loop nor a
    clustermon process), each registered as a target polled every `period` seconds. The
    collector's heartbeats go through the same ingest path; /cluster's p99 measures them."""
    if not count:
        return
    log = open(deployment.log_dir / "products.log", "wb")  # noqa: SIM115 - the child's, for good
    process = subprocess.Popen(
        [sys.executable, "-m", "collector.fake_product", "--servers", str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        preexec_fn=_die_with_us,
        start_new_session=True,
    )
    deployment.products.append(process)
    assert process.stdout is not None
    base = process.stdout.readline().decode().strip()  # its first line: where it listens
    if not base.startswith("http"):
        raise SystemExit(f"the fake product servers did not start; see {log.name}")
    for n in range(1, count + 1):
        name = f"fake-{n:04d}"  # fake_product's default names
        body = {"url": f"{base}/{name}", "interval_seconds": int(period)}
        deployment.put(f"/api/v1/targets/{name}", body)
    print(f"{count} targets polled every {period:g} s: fake product servers at {base}", flush=True)
