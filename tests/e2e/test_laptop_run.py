"""The README's first command: `clustermon run --simulate 3` on a new SQLite database shows a
living cluster, with the service that dies turning stale, within a minute; and `flask --app
wsgi run`, as API.md also names it, is the same all-in-one."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLUSTERMON = [sys.executable, "-m", "cli"]
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


@contextlib.contextmanager
def laptop(command: list[str], tmp_path) -> Iterator[tuple[str, str]]:
    """`command` started on a new SQLite database (`{port}` in it: the port chosen): its
    cluster URL and the admin token it printed; stopped (with its children) at the end."""
    port = free_port()
    env = {
        **os.environ,
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path}/clustermon.db",
        "CLUSTERMON_PORT": str(port) if "{port}" not in command else "1",
        "HOME": str(tmp_path),  # where gunicorn 27 would put its control socket
    }
    process = subprocess.Popen(
        [arg.format(port=port) for arg in command],
        cwd=ROOT,
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
            if match := re.search(r"admin token: +(\S+)", line):
                token = match.group(1)
                break
        assert token, "no admin token printed"
        # Keep reading what it logs, so that a full pipe never blocks it.
        drain = threading.Thread(target=process.stderr.read, daemon=True)
        drain.start()
        yield f"http://127.0.0.1:{port}/api/v1/cluster", token
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


def _view(url: str, token: str) -> dict | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return orjson.loads(response.read())
    except (urllib.error.URLError, OSError):  # not serving yet
        return None


def _states(view: dict | None) -> dict[tuple[str, str], str]:
    return {
        (s["name"], c["name"]): c["heartbeat"]["state"]
        for s in (view or {}).get("servers", [])
        for c in s["components"]
    }


def _statuses(view: dict | None) -> dict[tuple[str, str], str]:
    return {
        (s["name"], c["name"]): c["status"]
        for s in (view or {}).get("servers", [])
        for c in s["components"]
    }


def test_run_simulate_shows_a_dead_service_stale_within_a_minute(tmp_path):
    started = time.monotonic()
    with laptop([*CLUSTERMON, "run", "--simulate", "3"], tmp_path) as (url, token):
        view = None
        while time.monotonic() - started < 60:
            view = _view(url, token)
            if _states(view).get(("node02", "service")) == "stale" and len(_states(view)) == 12:
                break
            time.sleep(1)
        states = _states(view)
        # Three agents and three polled fake ProGet servers, web and service each.
        assert len(states) == 12, view
        assert [k for k, state in states.items() if state == "stale"] == [("node02", "service")]
        polled = [s for s in view["servers"] if s["name"].startswith("proget")]
        assert sorted(s["name"] for s in polled) == ["proget01", "proget02", "proget03"]
        assert {c["product_version"] for s in polled for c in s["components"]} == {"23.0.27"}
        targets = _view(url.replace("/cluster", "/targets"), token)
        assert [t["last_poll"]["ok"] for t in targets["targets"]] == [True, True, True]
        # proget03's service turns to Error a minute after the start: the poller says so.
        while time.monotonic() - started < 100:
            if _statuses(view := _view(url, token)).get(("proget03", "service")) == "error":
                break
            time.sleep(1)
        assert _statuses(view)[("proget03", "service")] == "error", view
        assert view["configuration"]["stale_timeout_seconds"] == 30  # the demo's, on a new log
        [node02] = [s for s in view["servers"] if s["name"] == "node02"]
        [service] = [c for c in node02["components"] if c["name"] == "service"]
        assert service["reasons"]  # it says why
        # The simulator's token is not on any command line.
        commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "cm_agent_" not in commands


def test_flask_app_wsgi_run_is_the_same_all_in_one(tmp_path):
    # Flask's built-in `run` (its development server, no migration) used to answer instead.
    # With Flask's own short options, -h and -p.
    with laptop([*FLASK, "run", "-h", "127.0.0.1", "-p", "{port}"], tmp_path) as (url, token):
        deadline = time.monotonic() + 30
        while (view := _view(url, token)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert view is not None and view["server_count"] == 0  # migrated, serving
        assert not (tmp_path / ".gunicorn").exists()  # no control socket (see test_serve)
    other = tmp_path / "otherapp.py"
    other.write_text("from flask import Flask\napp = Flask(__name__)\n")
    help_text = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "otherapp", "run", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "development server" in help_text  # any other app keeps Flask's own
