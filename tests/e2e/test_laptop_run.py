"""The README's first command: `clustermon run --simulate 3` on a new SQLite database shows a
living cluster, with the service that dies turning stale, within a minute."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return orjson.loads(response.read())


def test_run_simulate_shows_a_dead_service_stale_within_a_minute(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path}/clustermon.db",
        "CLUSTERMON_PORT": str(port),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", "from api.cli import main; main()", "run", "--simulate", "3"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    drain = None
    try:
        token = None
        for line in process.stderr:  # the banner prints the admin token once
            if match := re.search(r"admin token \(shown once\): (\S+)", line):
                token = match.group(1)
                break
        assert token, "run printed no admin token"
        # Keep reading what it logs, so that a full pipe never blocks it.
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        url = f"http://127.0.0.1:{port}/api/v1/cluster"
        view = None
        while time.monotonic() - started < 60:
            try:
                view = _get(url, token)
            except (urllib.error.URLError, OSError):
                view = None
            states = {
                (s["name"], c["name"]): c["heartbeat"]["state"]
                for s in (view or {}).get("servers", [])
                for c in s["components"]
            }
            if states.get(("node02", "service")) == "stale":
                break
            time.sleep(1)
        assert view is not None, "the API never answered"
        assert states.get(("node02", "service")) == "stale", view
        assert len(states) == 6  # three servers, web and service each
        assert [k for k, state in states.items() if state == "stale"] == [("node02", "service")]
        assert view["configuration"]["stale_timeout_seconds"] == 30  # the demo's, on a new log
        [node02] = [s for s in view["servers"] if s["name"] == "node02"]
        [service] = [c for c in node02["components"] if c["name"] == "service"]
        assert service["reasons"]  # it says why
        # The simulator's token is not on any command line.
        commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "cm_agent_" not in commands
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if drain is not None:
            drain.join(timeout=10)  # at the end of what it wrote
        process.stderr.close()
