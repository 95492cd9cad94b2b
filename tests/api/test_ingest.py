"""Group commit on both databases: concurrent requests share commits, every request learns its
own outcome, the lead passes on after a failure, and a request that gave up is not written."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from domain.events import HeartbeatRecorded
from eventstore import NewEvent, create_engine, open_store
from eventstore.commands import ClusterCommands
from eventstore.group_commit import GroupCommitter

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def _beat(server: str, event_id=None) -> NewEvent:
    beat = HeartbeatRecorded(server=server, component="service", sent_at=T0)
    return NewEvent(beat, event_id=event_id) if event_id else NewEvent(beat)


class HeldCommands(ClusterCommands):
    """The real commands; the first commit waits until the test lets it go, so that the
    other requests queue up behind it meanwhile. `fail_next` makes one commit raise."""

    def __init__(self, store):
        super().__init__(store)
        self.release = threading.Event()
        self.first_started = threading.Event()
        self.fail_next = False
        self.groups: list[int] = []

    def record_heartbeats(self, beats, **kwargs):
        self.groups.append(len(beats))
        if len(self.groups) == 1:
            self.first_started.set()
            assert self.release.wait(10)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("disk on fire")
        return super().record_heartbeats(beats, **kwargs)


@pytest.fixture
def commands(engine, clock):
    return HeldCommands(open_store(engine, clock))


def _in_threads(count, target):
    results = [None] * count

    def run(i):
        try:
            results[i] = target(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _queued(committer, count):
    for _ in range(1000):
        with committer._lock:
            if len(committer._queue) >= count:
                return
        threading.Event().wait(0.005)
    raise AssertionError("requests did not queue")


def test_requests_queued_behind_a_commit_share_the_next_one(commands):
    committer = GroupCommitter(commands)
    first, first_result = _in_threads(1, lambda i: committer.submit([_beat("lead")]))
    assert commands.first_started.wait(10)
    ids = [uuid.uuid4() for _ in range(15)]
    others, results = _in_threads(
        15, lambda i: committer.submit([_beat(f"s{i}", ids[i]), _beat(f"t{i}")], [ids[i]])
    )
    _queued(committer, 15)
    commands.release.set()
    for thread in [*first, *others]:
        thread.join(10)

    assert commands.groups == [1, 30]  # one commit for the fifteen that waited
    assert first_result[0].accepted == 1
    assert [r.accepted for r in results] == [2] * 15
    assert len(commands.store.read_all(0, None)) == 31
    assert {r.last_position for r in results} == {31}


def test_a_failed_commit_fails_its_group_and_the_next_group_still_commits(commands):
    committer = GroupCommitter(commands)
    first, first_result = _in_threads(1, lambda i: committer.submit([_beat("lead")]))
    assert commands.first_started.wait(10)
    commands.fail_next = True  # the first commit, once released, fails
    others, results = _in_threads(3, lambda i: committer.submit([_beat(f"s{i}")]))
    _queued(committer, 3)
    commands.release.set()
    for thread in [*first, *others]:
        thread.join(10)

    assert isinstance(first_result[0], RuntimeError)
    assert [r.accepted for r in results] == [1, 1, 1]
    streams = sorted(e.stream for e in commands.store.read_all(0, None))
    assert streams == ["s0/service", "s1/service", "s2/service"]  # nothing of the failed one
    assert not committer._leading  # the lead was given back: the next request leads


def test_a_request_that_gave_up_waiting_is_not_written(commands):
    committer = GroupCommitter(commands)
    first, _ = _in_threads(1, lambda i: committer.submit([_beat("lead")]))
    assert commands.first_started.wait(10)
    with pytest.raises(TimeoutError):
        committer.submit([_beat("impatient")], timeout=0.05)
    commands.release.set()
    first[0].join(10)

    assert committer.submit([_beat("later")]).accepted == 1
    streams = [e.stream for e in commands.store.read_all(0, None)]
    assert streams == ["lead/service", "later/service"]


def test_a_value_the_database_refuses_fails_only_its_own_request(pg_database_url, clock):
    # PostgreSQL refuses a UTC offset of 16 hours (validation refuses it before it gets here;
    # this is the net behind it). The three queued requests share a group: that commit fails,
    # and each request is committed alone, so that only the one carrying the value fails.
    engine = create_engine(pg_database_url)
    try:
        commands = HeldCommands(open_store(engine, clock))
        committer = GroupCommitter(commands)
        first, first_result = _in_threads(1, lambda i: committer.submit([_beat("lead")]))
        assert commands.first_started.wait(10)
        odd_clock = datetime(2026, 11, 27, 10, tzinfo=timezone(timedelta(hours=16)))
        odd = NewEvent(  # as the API builds it: occurred_at is the sender's clock
            HeartbeatRecorded(server="odd", component="service", sent_at=odd_clock),
            occurred_at=odd_clock,
        )
        requests = [[_beat("a")], [odd], [_beat("b")]]
        others, results = _in_threads(3, lambda i: committer.submit(requests[i]))
        _queued(committer, 3)
        commands.release.set()
        for thread in [*first, *others]:
            thread.join(10)

        assert commands.groups[:2] == [1, 3]
        assert first_result[0].accepted == 1
        assert isinstance(results[1], sa.exc.DataError)
        assert [results[0].accepted, results[2].accepted] == [1, 1]
        stored = sorted(e.stream for e in commands.store.read_all(0, None))
        assert stored == ["a/service", "b/service", "lead/service"]
    finally:
        engine.dispose()
