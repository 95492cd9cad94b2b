"""The README's curl lines work as pasted on a new install: `clustermon run` on a new SQLite
database, then every ```sh block of the README that calls curl, run by bash in order in one
shell (as a reader pastes them into one terminal), each curl answered 2xx.

Only the port changes (8000 -> a free one). Skipped: the blocks of "Get notified", which need a
real CLUSTERMON_SECRET_KEY and outside services (an SMTP server, Slack)."""

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
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_SECTIONS = {"Get notified"}
# Each curl tells its status on stderr (its body stays on stdout, for `$(curl …)`).
CURL_SHIM = "curl() { command curl -sS --write-out '%{stderr}HTTP %{http_code}\\n' \"$@\"; }\n"


def readme_curl_blocks() -> list[tuple[str, str]]:
    """(section title, block) for every ```sh block with a curl line, in README order."""
    blocks = []
    section = ""
    lines = iter((ROOT / "README.md").read_text().splitlines())
    for line in lines:
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.strip() == "```sh":
            block = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                block.append(inner)
            text = "\n".join(block)
            if re.search(r"(^|\$\()curl ", text, re.MULTILINE) and section not in SKIPPED_SECTIONS:
                blocks.append((section, text))
    return blocks


def curl_commands(block: str) -> int:
    return len(re.findall(r"(^|\$\()curl ", block, re.MULTILINE))


def test_the_readme_has_the_first_hour_lines():
    sections = [section for section, _ in readme_curl_blocks()]
    assert "The first hour" in sections
    assert "API" in sections
    first_hour = dict(readme_curl_blocks())["The first hour"]
    for variable in ("$ADMIN_TOKEN", "$VIEWER_TOKEN", "$AGENT_TOKEN"):
        assert variable in "\n".join(block for _, block in readme_curl_blocks()), variable
    assert "?at=" in first_hour


def test_the_readme_curl_lines_answer_2xx_against_a_new_run(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "CLUSTERMON_DATABASE_URL": f"sqlite:///{tmp_path}/instance/clustermon.db",
        "CLUSTERMON_PORT": str(port),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": str(ROOT),  # the checkout's packages, from the reader's folder too
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(process.stderr), daemon=True)
    reader.start()
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process, said)
        assert oct((tmp_path / "instance" / "tokens.env").stat().st_mode & 0o777) == "0o600"
        blocks = readme_curl_blocks()
        script = CURL_SHIM + "\n".join(
            block.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for _, block in blocks
        )
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,  # a reader's folder: instance/tokens.env is beside the database
            env={k: v for k, v in env.items() if not k.endswith("_TOKEN")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        statuses = re.findall(r"^HTTP (\d{3})$", result.stderr, re.MULTILINE)
        expected = sum(curl_commands(block) for _, block in blocks)
        assert len(statuses) == expected, result.stderr
        assert all(s.startswith("2") for s in statuses), (statuses, result.stdout, result.stderr)
        assert "event: HeartbeatRecorded" in result.stdout  # the stream, opened with a ticket
        # web01 is only in the view of ?at= (the first view was read before its heartbeat)
        assert '"name":"web01"' in result.stdout.replace(" ", ""), result.stdout
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        reader.join(timeout=10)
        process.stderr.close()


def _wait_for(url: str, process: subprocess.Popen, said: list[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "clustermon run ended: " + "".join(said)
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")
