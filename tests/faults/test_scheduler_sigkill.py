"""The leading scheduler SIGKILLed: a standby leads within 2 s (its election runs every second,
and the killed leader's lock goes with its connection or its file lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from cli.processes import spawn_scheduler
from tests.faults.conftest import wait_until

pytestmark = pytest.mark.slow


def test_a_standby_leads_within_two_seconds_of_the_leaders_sigkill(database_url, tmp_path):
    started: list[subprocess.Popen] = []

    def scheduler(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = spawn_scheduler(database_url, name=name, stderr=log, stdout=log)
        started.append(process)
        return process

    def said(name: str, words: str) -> bool:
        return words in (tmp_path / f"{name}.log").read_text(errors="replace")

    try:
        first = scheduler("A")
        wait_until(lambda: said("A", "A: leading"), 30, "A to lead")
        scheduler("B")
        wait_until(lambda: said("B", "standing by"), 30, "B to stand by")
        killed = time.monotonic()
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: said("B", "B: leading"), 10, "B to lead")
        assert time.monotonic() - killed < 2
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
