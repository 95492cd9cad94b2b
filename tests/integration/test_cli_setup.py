"""The first commands a new user types, through the real console entry point: what they say
when the database was never migrated, and which token names they refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MIGRATE = "the database has no clustermon tables: run `clustermon db upgrade`"


ROOT = Path(__file__).resolve().parents[2]
CLUSTERMON = [sys.executable, "-m", "cli"]
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]  # API.md: every command runs so too


def clustermon(url: str, *args: str, via: list[str] = CLUSTERMON) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*via, *args],
        cwd=ROOT,
        env={**os.environ, "CLUSTERMON_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("via", [CLUSTERMON, FLASK], ids=["clustermon", "flask"])
def test_a_command_on_a_database_never_migrated_says_to_migrate(empty_url, via):
    for command in (
        ("token", "create", "--role", "viewer", "--name", "me"),
        ("at", "2026-11-27T10:00:00Z"),
    ):
        done = clustermon(empty_url, *command, via=via)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == f"Error: {MIGRATE}"  # one line, no traceback
    assert clustermon(empty_url, "db", "upgrade").returncode == 0
    token = clustermon(empty_url, "token", "create", "--role", "viewer", "--name", "me")
    assert token.returncode == 0 and token.stdout.startswith("cm_viewer_")


@pytest.mark.parametrize("name", ["", "   "])
def test_a_token_needs_a_name(database_url, name):
    done = clustermon(database_url, "token", "create", "--role", "agent", "--name", name)
    assert done.returncode == 2
    assert "must name who uses the token" in done.stderr
    assert done.stdout == ""


def test_demo_timeouts_only_on_a_configuration_never_changed(store):
    from cli.serve import _configure_demo
    from eventstore.commands import ClusterCommands

    commands = ClusterCommands(store)
    assert _configure_demo(commands)
    demo = commands.configuration()
    assert (demo.heartbeat_frequency_seconds, demo.stale_timeout_seconds) == (10, 30)
    # Someone's choice afterwards is left alone by the next `run --simulate`.
    commands.change_configuration({"stale_timeout_seconds": 600}, {"actor": "admin-1"})
    assert not _configure_demo(commands)
    assert commands.configuration().stale_timeout_seconds == 600
