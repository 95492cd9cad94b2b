"""Real clustermon processes under injected failures: what they need and how they are watched.

Every process here writes its stderr to a file the test reads (the messages operators see are
part of what is tested); every heartbeat answer is kept whole (status, media type, headers) so
a test can say exactly which one was wrong.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

import migrations
from tests.conftest import PG_ADMIN_URL, scratch_database
from tests.faults.proxy import TcpProxy

CLUSTERMON = [sys.executable, "-m", "cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, seconds: float, what: str, interval: float = 0.05):
    """Poll `condition` until it returns something truthy (returned) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(interval)


class Clustermon:
    """`clustermon <command>` as a real process of its own, on `database_url`."""

    def __init__(self, database_url: str, log_dir: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CLUSTERMON_DATABASE_URL": database_url,
            "CLUSTERMON_PORT": str(self.port),
            "CLUSTERMON_WORKERS": "2",
            **env,
        }
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.stderr_path: Path | None = None

    def cli(self, *args: str) -> str:
        return subprocess.run(
            [*CLUSTERMON, *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()

    def spawn(self, *args: str) -> None:
        self.stderr_path = self.log_dir / f"{args[0]}-{self.port}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*CLUSTERMON, *args],
                env=self.env,
                start_new_session=True,  # its own process group: the kill reaches every worker
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def stderr(self) -> str:
        assert self.stderr_path is not None
        return self.stderr_path.read_text(errors="replace")

    def serve(self, *, wait: bool = True) -> None:
        self.spawn("serve")
        if wait:
            self.wait_serving(30)

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"clustermon exited ({self.process.returncode}):\n{self.stderr()}")
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def wait_serving(self, seconds: float) -> None:
        wait_until(self.answers, seconds, f"clustermon serving on {self.url}", interval=0.1)

    def get(self, path: str, timeout: float = 10) -> Answer:
        return _request(self.url + path, None, {}, timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused, reset, timed out)
    media_type: str = ""
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def json(self):
        return orjson.loads(self.body)

    def is_retry_later(self) -> bool:
        """503 problem+json with a Retry-After: what an agent must be told while the database
        is away."""
        return (
            self.status == 503
            and self.media_type == "application/problem+json"
            and "retry-after" in self.headers
            and self.json()["status"] == 503
        )

    def __str__(self) -> str:
        return f"{self.status} {self.media_type} {self.body[:300]!r} {self.error}"


def _request(url: str, body: bytes | None, headers: dict, timeout: float) -> Answer:
    request = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return _answer(exc.code, exc.headers, exc.read())
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        return Answer(0, error=f"{exc.__class__.__name__}: {exc}")


def _answer(status: int, headers, body: bytes) -> Answer:
    media_type = (headers.get("Content-Type") or "").partition(";")[0].strip()
    return Answer(status, media_type, {k.lower(): v for k, v in headers.items()}, body)


def heartbeat(server: str, event_id: str | None = None) -> dict:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "server": server,
        "component": "service",
        "status": "ok",
        "sent_at": datetime.now(UTC).isoformat(),
    }


def post_heartbeat(url: str, token: str, beat: dict, timeout: float = 20) -> Answer:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return _request(url + "/api/v1/heartbeats", orjson.dumps(beat), headers, timeout)


def pg_upstream() -> tuple[str, int]:
    url = sa.make_url(PG_ADMIN_URL)
    return url.host or "127.0.0.1", url.port or 5432


@pytest.fixture
def pg_scratch_url(request) -> Iterator[str]:
    """A migrated PostgreSQL database of its own (dropped afterwards): a server process gets a
    database nobody else writes to."""
    request.getfixturevalue("postgres_url")  # skips/fails like every PostgreSQL test
    with scratch_database("clustermon_faults") as url:
        migrations.upgrade(url)
        yield url


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy(pg_upstream())
    yield proxy
    proxy.cut()


@pytest.fixture
def processes() -> Iterator[list[Clustermon]]:
    """Clustermon processes a test starts; killed at its end."""
    started: list[Clustermon] = []
    yield started
    for process in started:
        process.kill()
