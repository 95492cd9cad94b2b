"""Heartbeat decisions beside other writers (another API process, the scheduler's sweep, an
operator changing the configuration), on both databases: each group is judged by the log and
the policy as they are when the append lock is held, whatever the process remembers."""

import contextlib
import threading
from datetime import UTC, datetime, timedelta

from domain.decisions import NotInCluster
from domain.events import HeartbeatRecorded, MonitorResumed
from eventstore import NewEvent, open_store
from eventstore.commands import ClusterCommands
from scheduler.sweep import emit_timeouts

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
ADMIN = {"actor": "admin"}
# A heartbeat, then the next one after the deadline: the outage it ended, and the heartbeat.
OUTAGE_THEN_BEAT = [
    "HeartbeatRecorded",
    "ComponentTimedOut",
    "ComponentRecovered",
    "HeartbeatRecorded",
]


def _beat(server="web01"):
    return NewEvent(HeartbeatRecorded(server=server, component="service", sent_at=T0))


def test_two_processes_writing_the_same_components_number_them_without_gaps(engine, clock):
    store = open_store(engine, clock)
    worker_a, worker_b = ClusterCommands(store), ClusterCommands(store)
    worker_a.record_heartbeats([_beat()])
    worker_b.record_heartbeats([_beat(), _beat("web02")])

    result = worker_a.record_heartbeats([_beat(), _beat("web03")])

    assert [r.version for r in result.recorded] == [3, 1]
    log = store.read_all(0, None)
    assert [(e.stream, e.version) for e in log] == [
        ("web01/service", 1),
        ("web01/service", 2),
        ("web02/service", 1),
        ("web01/service", 3),
        ("web03/service", 1),
    ]


def test_concurrent_groups_on_the_same_components_are_all_recorded(engine, clock):
    store = open_store(engine, clock)
    workers = [ClusterCommands(store) for _ in range(4)]
    errors = []

    def send(commands):
        try:
            for _ in range(25):
                commands.record_heartbeats([_beat("web01"), _beat("web02")])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    log = store.read_all(0, None)
    for stream in ("web01/service", "web02/service"):
        assert [e.version for e in log if e.stream == stream] == list(range(1, 101))


def test_a_timeout_the_sweep_recorded_since_the_last_group_gets_its_recovery(engine, clock):
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    commands.record_heartbeats([_beat()])
    clock.advance(minutes=10)
    emit_timeouts(store, clock())  # another process notices the expiry first

    commands.record_heartbeats([_beat()])

    log = store.read_all(0, None)
    assert [e.type for e in log] == OUTAGE_THEN_BEAT
    assert log[1].event.detector != "ingest"  # the sweep's timeout, not a second one
    assert log[2].event.stale_since == log[0].recorded_at + timedelta(minutes=5)


def test_an_expiry_nobody_recorded_yet_is_recorded_by_the_heartbeat(engine, clock):
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    commands.record_heartbeats([_beat()])
    clock.advance(minutes=5, seconds=1)

    commands.record_heartbeats([_beat()])

    log = store.read_all(0, None)
    assert [e.type for e in log] == OUTAGE_THEN_BEAT
    assert log[1].event.detector == "ingest"
    assert log[1].event.expired_at == log[0].recorded_at + timedelta(minutes=5)


def test_a_heartbeat_exactly_at_its_deadline_is_current(engine, clock):
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    commands.record_heartbeats([_beat()])
    clock.advance(minutes=5)

    commands.record_heartbeats([_beat()])

    assert [e.type for e in store.read_all(0, None)] == ["HeartbeatRecorded"] * 2


def test_a_configuration_changed_by_another_process_judges_the_next_group(engine, clock):
    store = open_store(engine, clock)
    api_worker, admin_worker = ClusterCommands(store), ClusterCommands(store)
    api_worker.record_heartbeats([_beat()])  # judged by the default 5 min stale timeout
    clock.advance(seconds=1)
    admin_worker.change_configuration(
        {"heartbeat_frequency_seconds": 10, "stale_timeout_seconds": 60}, ADMIN
    )
    clock.advance(seconds=89)

    # 90 s after its last heartbeat: current under the old 5 min, stale under the new 60 s.
    api_worker.record_heartbeats([_beat()])

    log = store.read_all(0, None)
    assert [e.type for e in log] == [
        "HeartbeatRecorded",
        "ConfigurationChanged",
        "ComponentTimedOut",
        "ComponentRecovered",
        "HeartbeatRecorded",
    ]
    assert log[2].event.timeout_seconds == 60
    assert log[2].event.expired_at == log[0].recorded_at + timedelta(seconds=60)


def test_after_a_monitor_gap_every_component_gets_one_full_timeout(engine, clock):
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    commands.record_heartbeats([_beat(), _beat("web02")])
    clock.advance(minutes=20)
    store.append(
        [NewEvent(MonitorResumed(down_since=T0, resumed_at=clock(), detector="scheduler"))]
    )
    clock.advance(minutes=4)

    commands.record_heartbeats([_beat()])  # 24 min after its last beat, 4 after the gap
    clock.advance(minutes=2)
    commands.record_heartbeats([_beat("web02")])  # 6 min after the gap: stale

    log = store.read_all(0, None)
    assert [(e.type, e.stream) for e in log[3:]] == [
        ("HeartbeatRecorded", "web01/service"),
        ("ComponentTimedOut", "web02/service"),
        ("ComponentRecovered", "web02/service"),
        ("HeartbeatRecorded", "web02/service"),
    ]
    assert log[4].event.expired_at == log[2].event.resumed_at + timedelta(minutes=5)


def _together(*jobs):
    """Run each job in its own thread at the same time; the exceptions they raised."""
    errors, start = [], threading.Barrier(len(jobs))

    def run(job):
        start.wait(timeout=10)
        try:
            job()
        except Exception as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_concurrent_configuration_changes_all_succeed_one_after_another(engine, clock):
    store = open_store(engine, clock)
    admins = [ClusterCommands(store) for _ in range(6)]

    def change(commands, n):
        def job():
            for i in range(10):  # every change differs from the one before: none is a no-op
                commands.change_configuration({"stale_timeout_seconds": 600 + 60 * n + i}, ADMIN)

        return job

    assert _together(*(change(c, n) for n, c in enumerate(admins))) == []
    changes = store.read_all(0, None, types=["ConfigurationChanged"])
    assert [e.version for e in changes] == list(range(1, 61))


def test_a_removal_succeeds_while_the_component_keeps_sending(engine, clock):
    store = open_store(engine, clock)
    agent, admin = ClusterCommands(store), ClusterCommands(store)
    agent.record_heartbeats([_beat()])
    removed = []

    def keep_sending():
        for _ in range(40):
            agent.record_heartbeats([_beat()])

    def remove_repeatedly():
        for _ in range(10):  # each heartbeat after a removal brings the component back
            # NotInCluster: removed, and no heartbeat since: nothing to remove.
            with contextlib.suppress(NotInCluster):
                removed.append(admin.remove_component("web01", "service", ADMIN))

    assert _together(keep_sending, remove_repeatedly) == []
    assert removed
    log = store.read_all(0, None, streams=["web01/service"])
    assert [e.version for e in log] == list(range(1, len(log) + 1))
    assert sum(e.type == "ComponentRemoved" for e in log) == len(removed)
