"""`clustermon agent` as a real process against a real `clustermon serve` (SQLite) and a fake
product /health on 127.0.0.1: heartbeats made while clustermon is stopped are all in the log,
once each, with their original `sent_at`, after it starts again; SIGTERM flushes and exits 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from collector.agent.spool import Spool
from tests.faults.conftest import Clustermon, free_port, wait_until
from tests.unit.test_agent_sender import HEALTH, FakeServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="serve and SIGTERM are POSIX here"),
]

ROOT = Path(__file__).resolve().parents[2]
SERVER = "agent-e2e-01"
KEY = "37D27A670394F7D82CE57F1F07D69747"
SPOOLED = re.compile(r"spooled heartbeat (\S+) \(\S+/(\w+), sent_at (\S+)\)")


class AgentProcess:
    """`clustermon agent` (as `python -m cli agent`), its stderr in a file. It reads its
    heartbeat period from clustermon (the test sets 1 s before starting it)."""

    def __init__(
        self, tmp_path: Path, url: str, token: str, health_url: str, period: int | None = None
    ):
        config = tmp_path / "ProGet.config"
        config.write_bytes(
            b"\xef\xbb\xbf<InedoAppConfig>\r\n"
            + f"  <EncryptionKey>{KEY}</EncryptionKey>\r\n".encode()
            + b"</InedoAppConfig>\r\n"
        )
        self.spool = tmp_path / "agent" / "spool.jsonl"
        self.stderr_path = tmp_path / "agent.stderr"
        self.args = [
            sys.executable,
            "-m",
            "cli",
            "agent",
            "--url",
            url,
            "--server",
            SERVER,
            "--health-url",
            health_url,
            "--config-file",
            str(config),
            "--spool",
            str(self.spool),
            "--verbose",
            *(["--period", str(period)] if period else []),
        ]
        self.env = {**os.environ, "CLUSTERMON_AGENT_TOKEN": token}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def spooled(self) -> list[tuple[str, str, str]]:
        """(event_id, component, sent_at) of every heartbeat it logged as spooled."""
        return SPOOLED.findall(self.stderr())

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def product() -> Iterator[FakeServer]:
    server = FakeServer()
    server.routes["/health"] = (200, HEALTH, {})
    yield server
    server.close()


def _call(url: str, method: str, path: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url + path,
        method=method,
        data=orjson.dumps(body) if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return orjson.loads(response.read())


def _logged_heartbeats(url: str, token: str) -> list[dict]:
    events, after = [], 0
    while True:
        page = _call(
            url,
            "GET",
            f"/api/v1/events?type=HeartbeatRecorded&server={SERVER}&after={after}&limit=1000",
            token,
        )
        events += page["events"]
        if not page["events"] or page.get("next_after") in (None, after):
            return events
        after = page["next_after"]


def _stop(clustermon: Clustermon) -> None:
    """SIGTERM to the whole process group, as an operator stops it."""
    assert clustermon.process is not None
    os.killpg(clustermon.process.pid, signal.SIGTERM)
    clustermon.process.wait(timeout=60)


def test_heartbeats_made_while_clustermon_is_down_are_logged_once_with_their_sent_at(
    tmp_path, product
):
    clustermon = Clustermon(f"sqlite:///{tmp_path / 'clustermon.db'}", tmp_path)
    clustermon.env["TMPDIR"] = str(tmp_path)
    clustermon.cli("db", "upgrade")
    admin = clustermon.cli("token", "create", "--role", "admin", "--name", "ops")
    token = clustermon.cli("token", "create", "--role", "agent", "--name", "agent01")
    agent = AgentProcess(tmp_path, clustermon.url, token, product.url)
    try:
        clustermon.serve()
        configuration = {"heartbeat_frequency_seconds": 1, "stale_timeout_seconds": 3}
        _call(clustermon.url, "PUT", "/api/v1/cluster/configuration", admin, configuration)
        agent.start()
        wait_until(
            lambda: len(_logged_heartbeats(clustermon.url, admin)) >= 2, 30, "first heartbeats"
        )

        _stop(clustermon)
        stopped_at = len(agent.spooled())
        # Three periods: each spools a web and a service heartbeat (after reading /health, so
        # count what is spooled, not the health reads).
        wait_until(lambda: len(agent.spooled()) >= stopped_at + 6, 30, "three periods")
        down = agent.spooled()[stopped_at:]
        assert len(down) >= 6  # web and service, three periods
        assert "not delivered" in agent.stderr()

        clustermon.serve()  # the same database, the same port
        made_before_restart = agent.spooled()
        wanted = {event_id: sent_at for event_id, _, sent_at in made_before_restart}

        def all_delivered() -> bool:
            logged = {e["event_id"] for e in _logged_heartbeats(clustermon.url, admin)}
            return set(wanted) <= logged

        wait_until(all_delivered, 120, "the spooled heartbeats delivered after the restart")
        assert agent.terminate() == 0
        logged = _logged_heartbeats(clustermon.url, admin)
    finally:
        agent.kill()
        clustermon.kill()

    event_ids = [e["event_id"] for e in logged]
    assert len(event_ids) == len(set(event_ids))  # each exactly once
    every_spooled = {event_id for event_id, _, _ in agent.spooled()}
    assert set(event_ids) <= every_spooled  # and nothing the agent did not make
    by_id = {e["event_id"]: e for e in logged}
    for event_id, component, sent_at in made_before_restart:
        event = by_id[event_id]
        assert event["data"]["component"] == component
        assert datetime.fromisoformat(event["data"]["sent_at"]) == datetime.fromisoformat(sent_at)
        assert datetime.fromisoformat(event["occurred_at"]) == datetime.fromisoformat(sent_at)
    for event_id, _, _ in down:
        assert by_id[event_id]["data"]["encryption_key_fingerprint"] is not None
    first = by_id[down[0][0]]["data"]
    assert (first["product"], first["product_version"], first["ip"]) == (
        "ProGet",
        "23.0.27",
        "127.0.0.1",
    )


def test_sigterm_flushes_the_spool_and_exits_0(tmp_path, product):
    nowhere = f"http://127.0.0.1:{free_port()}"  # no clustermon: everything stays spooled
    agent = AgentProcess(tmp_path, nowhere, "cm_agent_unused", product.url, period=1)
    agent.start()
    try:
        wait_until(lambda: len(agent.spooled()) >= 4, 30, "two periods of heartbeats spooled")
        assert agent.terminate() == 0
    finally:
        agent.kill()
    stderr = agent.stderr()
    assert "stopping (signal SIGTERM)" in stderr
    assert "agent stopped" in stderr
    with Spool.open(agent.spool, 1 << 20) as spool:
        _, waiting = spool.oldest(10_000)
    assert [b["event_id"] for b in waiting] == [event_id for event_id, _, _ in agent.spooled()]
