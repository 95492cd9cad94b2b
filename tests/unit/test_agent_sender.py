"""The agent against real local HTTP servers (a fake clustermon and a fake product /health on
127.0.0.1): what each answer does to the spooled heartbeats, backoff, the period, the loop with
an injected clock, and the command's exit codes."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from collector.agent import cli
from collector.agent.runner import Agent, Settings
from collector.agent.sender import Backoff, ClustermonApi, Delivery, Refused
from collector.agent.spool import MIN_MAX_BYTES, Spool

# The documented example answer of ProGet's GET /health (API.md v1.1).
HEALTH = {
    "applicationName": "ProGet",
    "releaseNumber": "23.0.27",
    "versionNumber": "2023.27 (Build 5)",
    "serviceStatus": "OK",
    "serviceStatusDetail": None,
    "databaseStatus": "OK",
    "databaseStatusDetails": None,
    "licenseStatus": "OK",
    "licenseStatusDetail": None,
    "extensionsInstalled": {},
    "replicationStatus": {},
}
KEY = "37D27A670394F7D82CE57F1F07D69747"


class FakeServer:
    """A real HTTP server on 127.0.0.1 answering from a script: each request gets the next
    scripted (status, body, headers), or the default once the script is used up. Every
    request is kept (method, path, headers, JSON body)."""

    def __init__(self, default=(202, {"accepted": 1, "duplicates": 0, "last_position": 1}, {})):
        self.script: deque = deque()
        self.default = default
        self.requests: list[dict] = []
        self.routes: dict[str, tuple] = {}  # path -> fixed answer (GET /health, /cluster)
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer()

            def do_POST(self):
                self._answer()

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(raw) if raw else None,
                    }
                )
                if fake.delay:
                    time.sleep(fake.delay)
                if path in fake.routes:
                    status, body, headers = fake.routes[path]
                else:
                    status, body, headers = fake.script.popleft() if fake.script else fake.default
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                try:
                    self.send_response(status)
                    media = "application/problem+json" if status >= 400 else "application/json"
                    self.send_header("Content-Type", media)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def posted(self) -> list[list[dict]]:
        """The heartbeat batches POSTed, in order."""
        return [r["json"]["heartbeats"] for r in self.requests if r["method"] == "POST"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def problem(status: int, detail: str, **extra) -> dict:
    return {"type": "about:blank", "title": "x", "status": status, "detail": detail, **extra}


@pytest.fixture
def clustermon() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def spool(tmp_path) -> Iterator[Spool]:
    spool = Spool.open(tmp_path / "spool.jsonl", 4 * 1024 * 1024)
    yield spool
    spool.close()


@pytest.fixture
def api(clustermon) -> Iterator[ClustermonApi]:
    api = ClustermonApi(clustermon.url, "cm_agent_secret", timeout=2)
    yield api
    api.close()


def beats(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "event_id": f"00000000-0000-4000-8000-{start + i:012d}",
            "server": "web01",
            "component": "service",
            "status": "ok",
            "sent_at": f"2026-11-27T10:{(start + i) // 60 % 60:02d}:{(start + i) % 60:02d}+00:00",
        }
        for i in range(n)
    ]


def test_a_202_empties_the_spool_oldest_first_in_batches_of_at_most_1000(clustermon, spool, api):
    spool.append(beats(2500))
    assert Delivery(spool, api).run() is None
    batches = clustermon.posted()
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [b for batch in batches for b in batch] == beats(2500)  # original event_id, sent_at
    assert len(spool) == 0
    assert clustermon.requests[0]["headers"]["Authorization"] == "Bearer cm_agent_secret"


def test_a_503_keeps_the_heartbeats_and_backs_off_at_least_its_retry_after(clustermon, spool, api):
    clustermon.script.append((503, problem(503, "not recorded, retry later"), {"Retry-After": "1"}))
    spool.append(beats(3))
    wait = Delivery(spool, api, Backoff(rand=lambda: 0.0)).run()
    assert wait == 1.0
    assert len(spool) == 3
    assert Delivery(spool, api).run() is None  # the next attempt gets its 202
    assert clustermon.posted()[1] == beats(3)


def test_without_an_answer_the_heartbeats_stay_and_the_wait_grows(spool, tmp_path):
    dead = FakeServer()
    dead.close()  # nothing listens there any more: connection refused
    spool.append(beats(2))
    with ClustermonApi(dead.url, "t") as api:
        delivery = Delivery(spool, api, Backoff(base=1, cap=60, rand=lambda: 1.0))
        waits = [delivery.run() for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert len(spool) == 2


def test_a_timeout_keeps_the_heartbeats(clustermon, spool):
    clustermon.delay = 1.0
    spool.append(beats(1))
    with ClustermonApi(clustermon.url, "t", timeout=0.2) as api:
        wait = Delivery(spool, api, Backoff(rand=lambda: 0.5)).run()
    assert wait == 0.5
    assert len(spool) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_stop_the_agent_and_keep_the_spool(clustermon, spool, api, status):
    clustermon.script.append((status, problem(status, "the token is not known or was revoked"), {}))
    spool.append(beats(2))
    with pytest.raises(Refused) as refused:
        Delivery(spool, api).run()
    assert refused.value.status == status
    assert "not known" in refused.value.detail
    assert len(spool) == 2


def test_a_422_drops_that_batch_logs_why_and_goes_on(clustermon, spool, api, caplog):
    errors = {"heartbeats": {"0": {"server": ["Length must be between 1 and 200."]}}}
    clustermon.script.append((422, problem(422, "invalid", errors=errors), {}))
    spool.append(beats(1500))
    caplog.set_level(logging.ERROR, logger="clustermon.agent")
    delivery = Delivery(spool, api)
    assert delivery.run() is None
    assert [len(b) for b in clustermon.posted()] == [1000, 500]
    assert delivery.rejected == 1000
    assert len(spool) == 0
    assert "Length must be between 1 and 200." in caplog.text


def test_a_429_waits_as_long_as_its_retry_after(clustermon, spool, api):
    clustermon.script.append((429, problem(429, "too many new servers"), {"Retry-After": "7"}))
    spool.append(beats(1))
    assert Delivery(spool, api, Backoff(rand=lambda: 0.0)).run() == 7.0
    assert len(spool) == 1


def test_a_retry_after_date_is_read_on_the_injected_clock(clustermon, spool):
    now = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
    later = "Fri, 27 Nov 2026 10:00:30 GMT"
    clustermon.script.append((503, problem(503, "later"), {"Retry-After": later}))
    spool.append(beats(1))
    with ClustermonApi(clustermon.url, "t", clock=lambda: now) as api:
        assert Delivery(spool, api, Backoff(rand=lambda: 0.0)).run() == 30.0


def test_a_413_splits_the_batch(clustermon, spool, api):
    clustermon.script.append((413, problem(413, "too large"), {}))
    spool.append(beats(10))
    assert Delivery(spool, api).run() is None
    assert [len(b) for b in clustermon.posted()] == [10, 5, 5]


def test_full_jitter_stays_under_the_cap():
    backoff = Backoff(base=1, cap=60)
    waits = [backoff.next_wait() for _ in range(50)]
    assert all(0 <= w <= 60 for w in waits)
    assert max(waits[10:]) > 1  # it does grow
    backoff.reset()
    assert backoff.next_wait() <= 1


def test_the_period_is_read_from_the_cluster_configuration(clustermon, api):
    view = {"heartbeat_frequency_seconds": 5, "stale_timeout_seconds": 300, "version": 1}
    clustermon.routes["/api/v1/cluster/configuration"] = (200, view, {})
    assert api.heartbeat_period() == 5
    clustermon.routes["/api/v1/cluster/configuration"] = (404, problem(404, "not found"), {})
    assert api.heartbeat_period() is None


@pytest.fixture
def product() -> Iterator[FakeServer]:
    """The local product, answering GET /health."""
    server = FakeServer()
    server.routes["/health"] = (200, HEALTH, {})
    yield server
    server.close()


class FakeTime:
    """The agent's clocks, moved only by its waits: periods pass without sleeping."""

    def __init__(self):
        self.now = 1000.0
        self.start = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.now

    def clock(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


def make_agent(clustermon, product, spool, api, tmp_path, fake: FakeTime) -> Agent:
    config = tmp_path / "ProGet.config"
    config.write_text(f"<InedoAppConfig><EncryptionKey>{KEY}</EncryptionKey></InedoAppConfig>")
    settings = Settings(clustermon.url, "web01", product.url + "/health", config)
    return Agent(
        settings,
        spool,
        api,
        Delivery(spool, api, Backoff(rand=lambda: 0.5)),
        httpx.Client(),
        clock=fake.clock,
        monotonic=fake.monotonic,
    )


def test_heartbeats_made_while_clustermon_is_away_arrive_later_with_their_sent_at(
    clustermon, product, spool, api, tmp_path
):
    clustermon.routes["/api/v1/cluster/configuration"] = (
        200,
        {"heartbeat_frequency_seconds": 10},
        {},
    )
    clustermon.default = (503, problem(503, "not recorded, retry later"), {"Retry-After": "1"})
    fake = FakeTime()
    agent = make_agent(clustermon, product, spool, api, tmp_path, fake)
    until = fake.now + 35  # three periods and a half: beats at 0, 10, 20, 30 s
    agent.run(lambda: fake.now >= until, fake.wait)
    agent.health_client.close()
    assert agent.period == 10
    assert agent.made == 8
    assert len(spool) == 8
    refused = [b for batch in clustermon.posted() for b in batch]
    assert refused  # it did try, and kept them
    clustermon.default = (202, {"accepted": 8, "duplicates": 0, "last_position": 8}, {})
    assert agent.delivery.run() is None
    delivered = clustermon.posted()[-1]
    assert [(b["component"], b["sent_at"]) for b in delivered] == [
        (component, f"2026-11-27T10:00:{second:02d}+00:00")
        for second in (0, 10, 20, 30)
        for component in ("web", "service")
    ]
    assert len({b["event_id"] for b in delivered}) == 8
    first = delivered[0]
    assert first["product"] == "ProGet"
    assert first["product_version"] == "23.0.27"
    assert len(first["encryption_key_fingerprint"]) == 64
    assert first["ip"] == "127.0.0.1"  # the route to clustermon
    assert first["os"]


def test_the_period_is_read_again_now_and_then_and_kept_while_unreadable(
    clustermon, product, spool, api, tmp_path
):
    view = {"heartbeat_frequency_seconds": 10}
    clustermon.routes["/api/v1/cluster/configuration"] = (200, view, {})
    fake = FakeTime()
    agent = make_agent(clustermon, product, spool, api, tmp_path, fake)
    agent.refresh_period()
    assert agent.period == 10
    clustermon.routes["/api/v1/cluster/configuration"] = (
        200,
        {"heartbeat_frequency_seconds": 20},
        {},
    )
    fake.now += 60
    agent.refresh_period()
    assert agent.period == 10  # not asked again so soon
    fake.now += 300
    agent.refresh_period()
    assert agent.period == 20
    clustermon.routes["/api/v1/cluster/configuration"] = (503, problem(503, "database away"), {})
    fake.now += 301
    agent.refresh_period()
    assert agent.period == 20  # the last one known
    agent.health_client.close()


def test_a_failing_local_health_makes_no_heartbeats(clustermon, product, spool, api, tmp_path):
    product.routes["/health"] = (200, b"<html>Sign in</html>", {})
    fake = FakeTime()
    agent = make_agent(clustermon, product, spool, api, tmp_path, fake)
    assert agent.beat() == 0
    assert len(spool) == 0
    agent.health_client.close()


def test_once_exits_0_when_all_was_delivered(clustermon, product, tmp_path, monkeypatch):
    result = _run_once(clustermon, product, tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert [b["component"] for b in clustermon.posted()[0]] == ["web", "service"]


def test_once_exits_75_when_heartbeats_wait_in_the_spool(
    clustermon, product, tmp_path, monkeypatch
):
    clustermon.default = (503, problem(503, "later"), {"Retry-After": "1"})
    result = _run_once(clustermon, product, tmp_path, monkeypatch)
    assert result.exit_code == 75, result.output
    with Spool.open(tmp_path / "spool.jsonl", MIN_MAX_BYTES) as spool:
        assert len(spool) == 2


def test_a_refused_token_stops_loudly_with_a_nonzero_exit(
    clustermon, product, tmp_path, monkeypatch
):
    clustermon.default = (401, problem(401, "the token is not known or was revoked"), {})
    result = _run_once(clustermon, product, tmp_path, monkeypatch)
    assert result.exit_code == 3
    assert "clustermon does not know the token" in result.output
    assert "2 heartbeats stay in the spool" in result.output
    assert "cm_agent_secret" not in result.output


def test_the_token_is_required_from_the_environment_only(tmp_path, monkeypatch):
    monkeypatch.delenv("CLUSTERMON_AGENT_TOKEN", raising=False)
    result = CliRunner().invoke(cli.agent, ["--url", "http://127.0.0.1:9", "--once"])
    assert result.exit_code == 2
    assert "CLUSTERMON_AGENT_TOKEN" in result.output


def _run_once(clustermon, product, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLUSTERMON_AGENT_TOKEN", "cm_agent_secret")
    config = tmp_path / "ProGet.config"
    config.write_text(f"<InedoAppConfig><EncryptionKey>{KEY}</EncryptionKey></InedoAppConfig>")
    args = ["--url", clustermon.url, "--health-url", product.url, "--server", "web01"]
    args += ["--config-file", str(config), "--spool", str(tmp_path / "spool.jsonl")]
    return CliRunner().invoke(cli.agent, [*args, "--period", "5", "--once"])


# -- what runs on a product server -----------------------------------------------------------

AGENT_SOURCES = Path(__file__).resolve().parents[2] / "collector" / "agent"
SERVER_PACKAGES = {
    "flask",
    "sqlalchemy",
    "psycopg",
    "gunicorn",
    "gevent",
    "marshmallow",
    "apscheduler",
    "api",
    "cli",
    "scheduler",
    "projections",
    "eventstore",
    "domain",
    "migrations",
}


def test_the_agent_loads_nothing_of_the_server():
    """`pip install` on a Windows product server must be enough: once the command is loaded,
    no module of the server or of its dependencies is."""
    probe = (
        "import sys, collector.agent.cli\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe, *SERVER_PACKAGES],
        cwd=AGENT_SOURCES.parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_agent_uses_no_posix_only_call():
    """Most product servers run Windows: no fork, no POSIX-only module or signal."""
    posix_modules = {"fcntl", "termios", "pwd", "grp", "resource", "posix"}
    posix_names = {"fork", "killpg", "setsid", "getuid", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2"}
    found = []
    for source in sorted(AGENT_SOURCES.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.Attribute):
                names = {node.attr} & posix_names
            else:
                continue
            found += [f"{source.name}: {n}" for n in names & (posix_modules | posix_names)]
    assert found == []
