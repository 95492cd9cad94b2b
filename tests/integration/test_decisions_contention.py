"""Heartbeat decisions racing other writers (another API process, the scheduler's sweep), on
both databases: a conflict is decided again under the append lock, never refused, and the
outage facts come from the log as it is when the lock is held."""

from datetime import UTC, datetime, timedelta

from eventstore import EventStore, NewEvent
from eventstore.decisions import ClusterCommands
from eventstore.events import HeartbeatRecorded
from scheduler.sweep import emit_timeouts

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def _beat(server="web01"):
    return NewEvent(HeartbeatRecorded(server=server, component="service", sent_at=T0))


def _interleave(commands: ClusterCommands, between):
    """Run `between()` right after `commands` has read its facts and before it appends."""
    read = commands._heartbeat_facts

    def read_then_let_others_write(*args):
        facts = read(*args)
        between()
        return facts

    commands._heartbeat_facts = read_then_let_others_write


def test_a_heartbeat_racing_another_process_is_recorded_not_refused(engine, clock):
    store = EventStore(engine, clock)
    worker_a, worker_b = ClusterCommands(store), ClusterCommands(store)
    worker_a.record_heartbeats([_beat()])
    _interleave(worker_a, lambda: worker_b.record_heartbeats([_beat(), _beat("web02")]))

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


def test_a_timeout_recorded_between_read_and_append_still_gets_its_recovery(engine, clock):
    store = EventStore(engine, clock)
    commands = ClusterCommands(store)
    commands.record_heartbeats([_beat()])
    clock.advance(minutes=10)
    # The optimistic read saw only the heartbeat; the sweep then records the timeout.
    _interleave(commands, lambda: emit_timeouts(store, clock()))

    commands.record_heartbeats([_beat()])

    log = store.read_all(0, None)
    assert [e.type for e in log] == [
        "HeartbeatRecorded",
        "ComponentTimedOut",
        "ComponentRecovered",
        "HeartbeatRecorded",
    ]
    assert log[1].event.detector != "ingest"  # the sweep's timeout, not a second one
    assert log[2].event.stale_since == log[0].recorded_at + timedelta(minutes=5)


def test_after_a_conflict_groups_are_decided_under_the_lock(engine, clock):
    store = EventStore(engine, clock)
    worker_a, worker_b = ClusterCommands(store), ClusterCommands(store)
    worker_a.record_heartbeats([_beat()])
    _interleave(worker_a, lambda: worker_b.record_heartbeats([_beat()]))
    worker_a.record_heartbeats([_beat()])  # conflicts once
    reads = []
    _interleave(worker_a, lambda: reads.append(1))

    worker_a.record_heartbeats([_beat()])

    assert reads == []  # no optimistic read: straight to the locked decision
    assert [e.version for e in store.read_all(0, None)] == [1, 2, 3, 4]
