"""The ingest decision on both databases: what it stamps and what it infers."""

from datetime import UTC, datetime, timedelta

from domain.events import HeartbeatRecorded
from eventstore import NewEvent, open_store
from eventstore.commands import ClusterCommands

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


class TickingClock:
    """Every reading is one second after the previous one."""

    def __init__(self):
        self.readings = []

    def __call__(self):
        now = T0 + timedelta(seconds=len(self.readings))
        self.readings.append(now)
        return now


def _beat(server="web01"):
    return NewEvent(HeartbeatRecorded(server=server, component="service", sent_at=T0))


def test_heartbeats_are_stamped_with_the_time_they_were_judged_at(engine):
    clock = TickingClock()
    commands = ClusterCommands(open_store(engine, clock))
    result = commands.record_heartbeats([_beat(), _beat("web02")])
    assert len(clock.readings) == 1  # one reading decides and stamps
    assert [r.recorded_at for r in result.recorded] == [clock.readings[0]] * 2


def test_a_retried_heartbeat_after_a_timeout_is_no_recovery(engine, clock):
    store = open_store(engine, clock)
    commands = ClusterCommands(store)
    beat = _beat()
    commands.record_heartbeats([beat])
    clock.advance(minutes=10)
    retried = commands.record_heartbeats([beat])  # the same delivery again, after the deadline
    assert retried.recorded == []
    assert retried.duplicates == [beat.event_id]
    assert [e.type for e in store.read_all(0, None)] == ["HeartbeatRecorded"]
