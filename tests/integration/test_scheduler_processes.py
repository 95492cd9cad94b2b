"""Scheduler processes (`clustermon scheduler`) against a real PostgreSQL: exactly one timeout
per expiry, takeover after SIGKILL, and heartbeats racing their deadline.

Real short timeouts (1-2 s) and polling loops bounded by a deadline; nothing asserts a sleep.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from cli.processes import spawn_scheduler
from domain.events import ConfigurationChanged, HeartbeatRecorded
from eventstore import NewEvent, create_engine, open_store
from eventstore.commands import ClusterCommands
from scheduler.leader import LOCK_HOLDER_PARAMS, LOCK_HOLDER_SQL

pytestmark = pytest.mark.slow


@pytest.fixture
def url(request):
    """PostgreSQL; the takeover test also runs on SQLite (file lock) through `database_url`."""
    name = "database_url" if "database_url" in request.fixturenames else "pg_database_url"
    return request.getfixturevalue(name)


@pytest.fixture
def pg_store(url):
    engine = create_engine(url)
    yield open_store(engine)
    engine.dispose()


@pytest.fixture
def schedulers(url, tmp_path):
    started: dict[str, subprocess.Popen] = {}

    def start(name, interval=0.1):
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        started[name] = spawn_scheduler(
            url, sweep_interval_seconds=interval, name=name, stderr=log, stdout=log
        )
        log.close()
        return started[name]

    yield start
    for process in started.values():
        if process.poll() is None:
            process.terminate()
    for process in started.values():
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung or starved child
            process.kill()
            process.wait(timeout=10)  # reaped here, not left running for the GC to warn about


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def leader(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT detector FROM scheduler_liveness")).scalars().all()


def configure(store, **changes):
    store.append([NewEvent(ConfigurationChanged(changes))])


def beats(store, names):
    events = [NewEvent(HeartbeatRecorded(n, "service", sent_at=store.clock())) for n in names]
    return ClusterCommands(store).record_heartbeats(events)


def by_stream(store):
    streams: dict[str, list] = {}
    for r in store.read_all(limit=None, stream_prefix="srv"):
        streams.setdefault(r.stream, []).append(r)
    return streams


def check_outages(streams, timeout, ingest_slack=timedelta(0)):
    """Every silence longer than the timeout yields exactly one timeout stamped with the exact
    expiry, before the heartbeat that ended it (and with a recovery); none otherwise.

    `ingest_slack`: the ingest decides "late" on a clock read a moment before the store stamps
    `recorded_at`, so a heartbeat can be stamped up to that moment after its deadline with no
    timeout before it (reported to the ingest's owner). The sweep's own rule — never a timeout
    before a heartbeat that arrived in time — is checked without slack."""
    expiries = 0
    for events in streams.values():
        last_beat = None
        pending = None  # the timeout recorded since last_beat
        for r in events:
            if r.type == "ComponentTimedOut":
                assert pending is None, f"duplicate timeout in {r.stream}"
                assert r.event.last_heartbeat_position == last_beat.position
                assert r.event.expired_at == last_beat.recorded_at + timeout
                pending = r
            elif r.type == "ComponentRecovered":
                assert pending is not None
            elif r.type == "HeartbeatRecorded":
                if last_beat is not None:
                    lateness = r.recorded_at - (last_beat.recorded_at + timeout)
                    if pending is not None:
                        assert lateness > timedelta(0), f"{r.stream}: timeout before {r}"
                        expiries += 1
                    else:
                        assert lateness <= ingest_slack, f"{r.stream}: {lateness} late, no timeout"
                last_beat, pending = r, None
        assert pending is not None, "the final silence was not timed out exactly once"
        expiries += 1
    return expiries


@pytest.mark.postgres
def test_two_scheduler_processes_emit_exactly_one_timeout_per_expiry(pg_store, schedulers):
    configure(pg_store, stale_timeout_seconds=1, heartbeat_frequency_seconds=1)
    names = [f"srv{n:03}" for n in range(60)]
    beats(pg_store, names)
    schedulers("A")
    schedulers("B")
    wait_for(lambda: leader(pg_store.engine), 20, "a leader")

    # Each component is silent 5 rounds out of 8 (1.5 s > the 1 s timeout): many expiries,
    # while the lock holder's connection is cut now and then so leadership moves.
    cuts = 0
    for round_ in range(24):
        beats(pg_store, [n for i, n in enumerate(names) if (round_ + i) % 8 >= 5])
        if round_ % 6 == 3:
            with pg_store.engine.begin() as conn:
                cuts += len(
                    conn.execute(
                        sa.text(f"SELECT pg_terminate_backend(pid) FROM ({LOCK_HOLDER_SQL}) h"),
                        LOCK_HOLDER_PARAMS,
                    ).all()
                )
        time.sleep(0.3)  # pacing of the simulated agents, not an assertion

    def all_final_timeouts():
        streams = by_stream(pg_store)
        return all(events[-1].type == "ComponentTimedOut" for events in streams.values())

    wait_for(all_final_timeouts, 20, "the final timeouts")
    time.sleep(0.5)  # let a duplicate, if any, land before counting
    streams = by_stream(pg_store)
    expiries = check_outages(streams, timedelta(seconds=1))
    timed_out = [r for events in streams.values() for r in events if r.type == "ComponentTimedOut"]
    assert len(timed_out) == expiries > 150
    assert cuts >= 2  # leadership really was taken away mid-run
    detectors = {r.event.detector for r in timed_out}
    assert detectors <= {"A", "B", "ingest"} and detectors & {"A", "B"}


def test_when_the_leader_is_killed_the_standby_emits_the_pending_timeouts(
    database_url, pg_store, schedulers, tmp_path
):
    configure(pg_store, stale_timeout_seconds=2, heartbeat_frequency_seconds=1)
    first = schedulers("A")
    wait_for(lambda: leader(pg_store.engine) == ["A"], 20, "A to lead")
    schedulers("B")
    log_b = tmp_path / "B.log"
    wait_for(lambda: b"standing by" in log_b.read_bytes(), 20, "B to stand by")

    recorded = beats(pg_store, [f"srv{n:03}" for n in range(30)]).recorded
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    def timed_out():
        found = [r for r in pg_store.read_all(limit=None) if r.type == "ComponentTimedOut"]
        return found if len(found) >= 30 else None

    found = wait_for(timed_out, 20, "the standby's timeouts")
    time.sleep(0.5)
    found = [r for r in pg_store.read_all(limit=None) if r.type == "ComponentTimedOut"]
    assert len(found) == 30
    assert {r.event.detector for r in found} == {"B"}
    expiry = {r.event.server: r.recorded_at + timedelta(seconds=2) for r in recorded}
    assert all(r.event.expired_at == expiry[r.event.server] for r in found)
    # Taken over within a few seconds: the deadline was 2 s after the kill.
    assert max(r.event.detected_at - r.event.expired_at for r in found) < timedelta(seconds=5)


@pytest.mark.postgres
def test_heartbeats_racing_their_deadline_never_follow_a_timeout_they_beat(pg_store, schedulers):
    configure(pg_store, stale_timeout_seconds=1, heartbeat_frequency_seconds=1)
    rng = random.Random(5)
    names = [f"srv{n:03}" for n in range(20)]
    beats(pg_store, names)
    schedulers("A", interval=0.02)
    wait_for(lambda: leader(pg_store.engine), 20, "a leader")

    # Every heartbeat is aimed to be stamped within +-20 ms of its component's deadline (wall
    # clock, the clock the store stamps recorded_at with), allowing for the time a call takes
    # to reach the store (learned as it goes).
    due = {n: time.time() + 1 + rng.uniform(-0.02, 0.02) for n in names}
    latency = 0.005
    stop = time.time() + 8
    while time.time() < stop:
        name = min(due, key=due.get)
        time.sleep(max(0.0, due[name] - latency - time.time()))
        sent = time.time()
        [*_, recorded] = beats(pg_store, [name]).recorded
        latency = 0.8 * latency + 0.2 * (recorded.recorded_at.timestamp() - sent)
        due[name] = recorded.recorded_at.timestamp() + 1 + rng.uniform(-0.02, 0.02)

    def settled():
        return all(e[-1].type == "ComponentTimedOut" for e in by_stream(pg_store).values())

    wait_for(settled, 20, "the final timeouts")
    streams = by_stream(pg_store)
    check_outages(streams, timedelta(seconds=1), ingest_slack=timedelta(milliseconds=50))
    kinds = [r for events in streams.values() for r in events]
    late = [r for r in kinds if r.type == "ComponentRecovered"]
    by_scheduler = [r for r in kinds if r.type == "ComponentTimedOut" and r.event.detector == "A"]
    in_time = len([r for r in kinds if r.type == "HeartbeatRecorded"]) - len(late) - len(names)
    # The race really was run both ways.
    assert len(late) > 10 and in_time > 10 and len(by_scheduler) > len(names)


def test_a_spawned_scheduler_exits_when_its_parent_is_killed(database_url, tmp_path):
    """`spawn_scheduler` (what `clustermon run` uses) leaves no orphan behind, even after a
    SIGKILL of the parent, so its leader lock never outlives the all-in-one process."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from cli.processes import spawn_scheduler\n"
            "child = spawn_scheduler(sys.argv[1], name='child', stdout=open(sys.argv[2], 'wb'),"
            " stderr=open(sys.argv[2], 'wb'))\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n",
            database_url,
            str(tmp_path / "child.log"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        child = int(parent.stdout.readline())
        engine = create_engine(database_url)
        try:
            wait_for(lambda: leader(engine) == ["child"], 20, "the child to lead")
        finally:
            engine.dispose()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_for(lambda: not _running(child), 20, "the orphaned scheduler to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(
                line.split()[1:2] == ["Z"] for line in status if line.startswith("State")
            )
    except FileNotFoundError:
        return False
