"""PostgreSQL down when `serve` and `scheduler` start: they say so in one line and wait, then
proceed on their own once it answers (here: once the proxy in front of it starts listening)."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import Clustermon, heartbeat, post_heartbeat, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAITING = "clustermon: waiting for the database at 127.0.0.1:{port}/"


def _waits_quietly(process: Clustermon, port: int) -> None:
    """Still running, saying once what it waits for; no traceback."""

    def waiting() -> bool:
        assert process.process is not None
        if process.process.poll() is not None:
            raise AssertionError(f"exited instead of waiting:\n{process.stderr()}")
        return WAITING.format(port=port) in process.stderr()

    wait_until(waiting, 20, "the waiting message")
    time.sleep(2.5)  # a few retries: they must not print a line (or a traceback) each
    stderr = process.stderr()
    assert process.process.poll() is None, stderr
    assert "Traceback" not in stderr, stderr
    assert "Connection refused" in stderr, stderr  # why it waits
    lines = [line for line in stderr.splitlines() if "waiting for the database" in line]
    assert len(lines) == 1, stderr  # one line, not one per attempt


def test_serve_waits_for_postgresql_then_serves(pg_scratch_url, proxy, processes, tmp_path):
    server = Clustermon(proxy.url_for(pg_scratch_url), tmp_path)
    processes.append(server)
    # The token goes straight to the database: only serve sees it through the proxy.
    token = Clustermon(pg_scratch_url, tmp_path).cli(
        "token", "create", "--role", "agent", "--name", "faults"
    )
    server.serve(wait=False)

    _waits_quietly(server, proxy.port)
    assert not server.answers()

    proxy.restore()
    server.wait_serving(30)
    assert post_heartbeat(server.url, token, heartbeat("node1")).status == 202
    assert "answers" in server.stderr()
    assert "Traceback" not in server.stderr()


def test_scheduler_waits_for_postgresql_then_leads(pg_scratch_url, proxy, processes, tmp_path):
    scheduler = Clustermon(proxy.url_for(pg_scratch_url), tmp_path)
    processes.append(scheduler)
    scheduler.spawn("scheduler")

    _waits_quietly(scheduler, proxy.port)

    proxy.restore()
    wait_until(lambda: ": leading" in scheduler.stderr(), 30, "the scheduler leading")
    assert "Traceback" not in scheduler.stderr()


def test_a_leading_scheduler_says_once_that_the_database_went_away(
    pg_scratch_url, proxy, processes, tmp_path
):
    # Every job fails each time it runs while the database is away: that was a traceback per
    # job per second in the log. Now one line when it goes, one when it is back.
    proxy.restore()
    scheduler = Clustermon(proxy.url_for(pg_scratch_url), tmp_path)
    processes.append(scheduler)
    scheduler.spawn("scheduler")
    wait_until(lambda: ": leading" in scheduler.stderr(), 30, "the scheduler leading")

    proxy.cut()
    wait_until(lambda: "wait for it and retry" in scheduler.stderr(), 20, "the outage line")
    time.sleep(3)  # three election rounds, three sweeps: none may add a line
    proxy.restore()
    wait_until(lambda: "answers again" in scheduler.stderr(), 30, "the recovery line")

    stderr = scheduler.stderr()
    assert "Traceback" not in stderr, stderr
    assert stderr.count("wait for it and retry") == 1, stderr
    assert scheduler.process is not None and scheduler.process.poll() is None
