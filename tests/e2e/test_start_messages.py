"""What `serve` and `run` print as they start: where they serve and who leads, in plain words,
once; no password; a warning where one is due; the same tokens on every run of an instance."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cli.laptop_tokens import tokens_path
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


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
    # The tokens file of a PostgreSQL instance is in the instance folder (the checkout's).
    kept = tokens_path(pg_database_url, str(ROOT / "instance"))
    try:
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
        assert "s3cret-pw" not in kept.read_text()
    finally:
        kept.unlink(missing_ok=True)


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_serve_warns_when_others_can_reach_it_with_the_default_secret(tmp_path, host, warned):
    env = {
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path / 'clustermon.db'}",
        "CLUSTERMON_PORT": str(free_port()),
        "CLUSTERMON_HOST": host,
        "TMPDIR": str(tmp_path),
    }
    env.pop("CLUSTERMON_SECRET_KEY", None)
    text = _first_lines(["serve"], env, until="clustermon is serving")  # after the warning
    assert ("development CLUSTERMON_SECRET_KEY" in text) is warned


def test_serve_says_where_it_serves_in_plain_words_once(tmp_path):
    port = free_port()
    env = {
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path / 'clustermon.db'}",
        "CLUSTERMON_PORT": str(port),
        "CLUSTERMON_WORKERS": "2",
        "TMPDIR": str(tmp_path),
    }
    text = _first_lines(["serve"], env, until="clustermon is serving")
    base = f"http://127.0.0.1:{port}"
    assert text.splitlines()[-1] == (
        f"clustermon is serving {base}/ (dashboard); API at {base}/api/v1"
    )
    # gunicorn's start lines are gone: "Listening at:  (pid)" named no address
    assert "Listening at" not in text and "Booting worker" not in text


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


@contextlib.contextmanager
def running(args: list[str], env: dict, tmp_path) -> Iterator[Callable[[str], str]]:
    """A clustermon command running in `tmp_path`; yields `wait_for(text)`, which returns what
    it said on stderr once `text` appeared (it keeps reading, so the pipe never fills)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stderr), daemon=True)
    reader.start()

    def wait_for(text: str, seconds: float = 90) -> str:
        deadline = time.monotonic() + seconds
        while text not in "".join(said):
            assert process.poll() is None, "it ended: " + "".join(said)
            assert time.monotonic() < deadline, f"no {text!r} in: " + "".join(said)
            time.sleep(0.1)
        return "".join(said)

    try:
        yield wait_for
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        reader.join(timeout=10)
        process.stderr.close()


def _tokens(text: str) -> dict[str, str]:
    return dict(re.findall(r"^  (admin|viewer|agent) token: +(\S+)", text, re.MULTILINE))


def _status(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/cluster", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_run_says_what_it_does_once_and_keeps_its_tokens_across_restarts(tmp_path):
    port = free_port()
    env = {
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path / 'instance' / 'clustermon.db'}",
        "CLUSTERMON_PORT": str(port),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
    }
    kept = tmp_path / "instance" / "tokens.env"
    serving = (
        f"clustermon is serving http://127.0.0.1:{port}/ (dashboard); API at"
        f" http://127.0.0.1:{port}/api/v1\n"
    )
    with running(["run", "--simulate", "1"], env, tmp_path) as wait_for:
        text = wait_for(": leading (")
        text = wait_for("simulator: 1 servers send heartbeats")
        first = _tokens(text)
        assert sorted(first) == ["admin", "agent", "viewer"]
        assert "tokens of this instance (new; kept in" in text
        assert text.count(serving) == 1
        assert text.count("scheduler ") == 1  # one line: it leads
        for fault_like in ("standing by for the leader lock", "Listening at", "sent round"):
            assert fault_like not in text
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        exported = dict(re.findall(r"^export (\w+)=(\S+)$", kept.read_text(), re.MULTILINE))
        assert exported == {
            "ADMIN_TOKEN": first["admin"],
            "VIEWER_TOKEN": first["viewer"],
            "AGENT_TOKEN": first["agent"],
        }
        # The README's lines source the file in a shell.
        sourced = subprocess.run(
            ["bash", "-c", ". instance/tokens.env && echo $ADMIN_TOKEN $VIEWER_TOKEN"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert sourced == [first["admin"], first["viewer"]]

    with running(["run"], env, tmp_path) as wait_for:
        text = wait_for(serving)
        assert _tokens(text) == first
        assert "tokens of this instance (the same as before;" in text
        assert "CHANGED" not in text
        assert _status(port, first["admin"]) == 200  # an open tab's token still works

    kept.unlink()  # lost: the tokens cannot be shown again, so they change, loudly
    with running(["run"], env, tmp_path) as wait_for:
        text = wait_for(serving)
        again = _tokens(text)
        assert "WARNING: the admin, viewer, agent token(s) CHANGED" in text
        assert set(again.values()).isdisjoint(first.values())
        assert _status(port, again["admin"]) == 200
        assert _status(port, first["admin"]) == 401  # revoked: nobody can read it any more
