"""What a new user does first: create a token, play a few servers, see a living cluster."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import orjson
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_simulated_servers_show_up_with_their_problems(server):
    server.cli("db", "upgrade")
    viewer = server.cli("token", "create", "--role", "viewer", "--name", "me")
    assert viewer.startswith("cm_viewer_") and "\n" not in viewer
    server.start()
    server.cli(
        "simulate",
        "--servers",
        "3",
        "--rounds",
        "1",
        "--url",
        server.url,
        "--version-drift",
        "node02",
        "--key-mismatch",
        "node03",
    )
    request = urllib.request.Request(
        server.url + "/api/v1/cluster", headers={"Authorization": f"Bearer {viewer}"}
    )
    with urllib.request.urlopen(request) as response:
        view = orjson.loads(response.read())
    rows = {s["name"]: s for s in view["servers"]}
    assert sorted(rows) == ["node01", "node02", "node03"]
    assert [c["name"] for c in rows["node01"]["components"]] == ["service", "web"]
    assert rows["node01"]["health"] == "ok"
    assert rows["node02"]["version_in_sync"] is False
    assert rows["node03"]["encryption_key_in_sync"] is False
    assert rows["node03"]["health"] == "error"


def test_metrics_add_up_every_gunicorn_worker(server):
    server.cli("db", "upgrade")
    token = server.cli("token", "create", "--role", "agent", "--name", "metrics")
    server.start()  # two workers
    for i in range(20):
        request = urllib.request.Request(
            server.url + "/api/v1/heartbeats",
            data=orjson.dumps(
                {"server": f"m{i}", "component": "web", "sent_at": "2026-11-27T10:00:00Z"}
            ),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 202
    with urllib.request.urlopen(server.url + "/metrics") as response:
        body = response.read().decode()
    [line] = [
        line
        for line in body.splitlines()
        if line.startswith("clustermon_heartbeats_accepted_total ")
    ]
    assert float(line.split()[1]) == 20


def _simulate(server, *options: str) -> str:
    """What `clustermon simulate` says on stderr over three quick rounds."""
    simulate = ["simulate", "--servers", "2", "--url", server.url, "--rounds", "3"]
    return subprocess.run(
        [sys.executable, "-m", "cli", *simulate, "--interval", "0.05", *options],
        env=server.env,
        check=True,
        capture_output=True,
        text=True,
    ).stderr


def test_the_simulator_is_quiet_unless_asked(server):
    server.cli("db", "upgrade")
    server.start()
    quiet = _simulate(server)
    # One line that it works, not one per round: `run` prints its tokens above it.
    assert quiet.splitlines() == [
        f"simulator: 2 servers send heartbeats to {server.url} every 0.05 s (--verbose shows"
        " each round)"
    ]
    verbose = _simulate(server, "--verbose")
    assert [line.split(":")[0] for line in verbose.splitlines()] == [
        "sent round 1",
        "sent round 2",
        "sent round 3",
    ]


def test_the_simulator_says_once_that_the_monitor_is_away(server):
    server.cli("db", "upgrade")  # not started: nothing listens at its URL
    said = _simulate(server)
    assert len(said.splitlines()) == 1
    assert said.startswith(f"simulator: monitor not reachable at {server.url}")
