"""What `serve` and `run` print as they start: no password, and a warning where one is due."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow


def _first_lines(args: list[str], env: dict, until: str) -> str:
    """What the command writes to stderr up to the line containing `until`; then it stops."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if until in line:
                break
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stderr.close()
    return "".join(lines)


@pytest.mark.postgres
def test_run_does_not_print_the_database_password(pg_database_url):
    url = sa.make_url(pg_database_url).set(password="s3cret-pw")  # trust auth ignores it
    text = _first_lines(
        ["run"],
        {
            "CLUSTERMON_DATABASE_URL": url.render_as_string(hide_password=False),
            "CLUSTERMON_PORT": str(free_port()),
        },
        until="admin token",
    )
    assert "database: postgresql+psycopg://postgres:***@" in text
    assert "s3cret-pw" not in text


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serve_warns_when_others_can_reach_it_with_the_default_secret(tmp_path, host, warned):
    env = {
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path / 'clustermon.db'}",
        "CLUSTERMON_PORT": str(free_port()),
        "CLUSTERMON_HOST": host,
        "TMPDIR": str(tmp_path),
    }
    env.pop("CLUSTERMON_SECRET_KEY", None)
    text = _first_lines(["serve"], env, until="Booting worker")  # gunicorn's, after ours
    assert ("development CLUSTERMON_SECRET_KEY" in text) is warned


def test_a_new_sqlite_database_is_its_owners_only(tmp_path):
    folder = tmp_path / "data"
    url = f"sqlite:///{folder / 'clustermon.db'}"
    subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade"],
        env={**os.environ, "CLUSTERMON_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    made = [folder, *folder.iterdir()]  # the database, its WAL and shared memory
    assert {p.name for p in made} >= {"data", "clustermon.db"}
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.name} is {oct(mode)}"
