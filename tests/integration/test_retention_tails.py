"""A stream's tail and the policy survive archiving (#21), on SQLite and PostgreSQL.

Once every event of a stream is archived the stream still has its version and its last event
(`archived_tails`, eventstore/tables.py): appends continue it, a timed-out component recovers,
the sweep's expected version holds. The configuration in force is still the one changed before
the archive. Every append path of each database is exercised: one event, a few, 32 and more
(PostgreSQL's COPY), and heartbeat ingest (PostgreSQL's one-statement function, then the
locked decision).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from domain.events import MONITOR_STREAM, ComponentRecovered, component_stream
from eventstore import retention
from eventstore.commands import POLICY_STREAMS, ClusterCommands, stream_tails
from eventstore.store import ConcurrencyError
from eventstore.tables import archived_tails
from eventstore.tables import events as events_table
from projections.readmodel.boundary import snapshot_boundary
from scheduler.deadlines import DeadlineIndex
from scheduler.sweep import emit_timeouts
from tests.integration import projection_support as ps

A = component_stream("a", "service")
C = component_stream("c", "service")
ARCHIVE = {"path": "/var/lib/clustermon/archive/2026-11", "sha256": "0" * 64}


def archive_before(store, before) -> tuple[int, int, int]:
    """What the archiver does to the database once its files are written."""
    found = retention.archivable_range(store.engine, before)
    assert found is not None
    first, last, count = found
    snapshot_boundary(store, last)
    retention.delete_range(store.engine, first, last, count, {**ARCHIVE, "before": before})
    return found


def kept_versions(store, stream) -> list[int]:
    return [e.version for e in store.read_stream(stream)]


def tails(store) -> list[tuple[str, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(archived_tails.c.stream, archived_tails.c.version).order_by(
                archived_tails.c.position
            )
        )
        return [tuple(row) for row in rows]


def test_a_timed_out_component_whose_events_are_all_archived_recovers(store, clock):
    commands = ClusterCommands(store)
    commands.record_heartbeats([ps.beat(store, "a"), ps.beat(store, "b")])
    clock.advance(seconds=301)
    commands.record_heartbeats([ps.beat(store, "b")])
    (timeout,) = emit_timeouts(store, clock(), detector="t")
    clock.advance(seconds=1)
    commands.record_heartbeats([ps.beat(store, "b")])  # the newest event, kept
    archive_before(store, clock())
    assert kept_versions(store, A) == []

    clock.advance(seconds=30)
    # b first: the next group of heartbeats is offered to PostgreSQL's ingest function, which
    # must find a's timeout among the archived tails and leave the decision to the commands.
    commands.record_heartbeats([ps.beat(store, "b")])
    result = commands.record_heartbeats([ps.beat(store, "a")])

    recovery, beat = result.recorded
    assert (recovery.type, recovery.version) == ("ComponentRecovered", 3)
    assert isinstance(recovery.event, ComponentRecovered)
    assert recovery.event.stale_since == timeout.event.expired_at
    assert (beat.type, beat.version) == ("HeartbeatRecorded", 4)
    # A new process (no cached policy) decides the same way.
    clock.advance(seconds=400)
    ClusterCommands(store).record_heartbeats([ps.beat(store, "b")])
    late = ClusterCommands(store).record_heartbeats([ps.beat(store, "a")]).recorded
    assert [(e.type, e.version) for e in late] == [
        ("ComponentTimedOut", 5),
        ("ComponentRecovered", 6),
        ("HeartbeatRecorded", 7),
    ]


def test_a_streams_version_goes_on_after_its_events_are_archived(store, clock):
    store.append([ps.beat(store, "a"), ps.beat(store, "a")])
    store.append([ps.beat(store, "c")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b")])
    archive_before(store, clock())
    assert store.stream_version(A) == 2

    with pytest.raises(ConcurrencyError):
        store.append([ps.beat(store, "a")], expected_version={A: 0})
    # One event, a few, and 40 (PostgreSQL's COPY path): each continues its stream.
    (one,) = store.append([ps.beat(store, "a")], expected_version={A: 2}).recorded
    assert one.version == 3
    few = store.append([ps.beat(store, "a"), ps.beat(store, "c")], expected_version={C: 1})
    assert [(e.stream, e.version) for e in few.recorded] == [(A, 4), (C, 2)]
    many = store.append([ps.beat(store, "c") for _ in range(40)], expected_version={C: 2})
    assert [e.version for e in many.recorded] == list(range(3, 43))
    assert store.stream_version(C) == 42

    # The sweep judges a by its kept events again, and its expected version holds.
    clock.advance(seconds=301)
    store.append([ps.beat(store, "b")])
    timeouts = emit_timeouts(store, clock(), index=DeadlineIndex(), detector="t")
    assert sorted((t.stream, t.version) for t in timeouts) == [(A, 5), (C, 43)]


def test_the_sweep_times_out_a_component_whose_tail_alone_is_left(store, clock):
    store.append([ps.beat(store, "a"), ps.beat(store, "a")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b")])
    archive_before(store, clock())
    clock.advance(seconds=295)

    (timeout,) = emit_timeouts(store, clock(), index=DeadlineIndex(), detector="t")
    assert (timeout.stream, timeout.version) == (A, 3)
    assert emit_timeouts(store, clock(), index=DeadlineIndex(), detector="t") == []


def test_an_archived_configuration_change_stays_in_force(store, clock):
    commands = ClusterCommands(store)
    commands.change_configuration({"stale_timeout_seconds": 600}, {"actor": "admin"})
    (resumed,) = store.append([ps.resumed(store, clock() - timedelta(minutes=1))]).recorded
    resumed_at = resumed.event.resumed_at
    commands.record_heartbeats([ps.beat(store, "a"), ps.beat(store, "b")])
    clock.advance(seconds=60)
    commands.record_heartbeats([ps.beat(store, "b")])
    archive_before(store, clock())
    assert store.read_all(streams=["cluster", MONITOR_STREAM]) == []

    for fresh in (commands, ClusterCommands(store)):  # cached, and read again
        config = fresh.configuration()
        assert (config.stale_timeout_seconds, config.version) == (600, 1)
    # 6 minutes after a's last heartbeat: past the default 5, within the configured 10.
    clock.advance(seconds=300)
    assert emit_timeouts(store, clock(), index=DeadlineIndex(), detector="t") == []
    fresh = ClusterCommands(store)
    fresh.record_heartbeats([ps.beat(store, "b")])
    beat = fresh.record_heartbeats([ps.beat(store, "a")])
    assert [e.type for e in beat.recorded] == ["HeartbeatRecorded"]
    with store.engine.connect() as conn:
        policy = fresh.policy(stream_tails(conn, POLICY_STREAMS))
    assert policy.monitor_resumed_at == resumed_at

    # The configuration goes on from the archived one: version 2, the stale timeout kept.
    updated, change = fresh.change_configuration(
        {"heartbeat_frequency_seconds": 60}, {"actor": "admin"}
    )
    assert change is not None and change.version == 2
    assert (updated.stale_timeout_seconds, updated.heartbeat_frequency_seconds) == (600, 60)
    assert ClusterCommands(store).configuration() == updated


def test_what_an_archive_keeps_of_the_streams_it_takes(store, clock):
    store.append([ps.configure(stale_timeout_seconds=600)])
    store.append([ps.beat(store, "a"), ps.beat(store, "a"), ps.beat(store, "b")])
    store.append([ps.configure(stale_timeout_seconds=900)])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b"), ps.beat(store, "c")])
    archive_before(store, clock())

    # Every policy event; a's last (no event of a is left); nothing of b (it has one kept).
    assert tails(store) == [("cluster", 1), (A, 2), ("cluster", 2)]


def test_a_restore_puts_the_events_back_beside_those_appended_since(store, clock):
    store.append([ps.configure(stale_timeout_seconds=600)])
    store.append([ps.beat(store, "a"), ps.beat(store, "a")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b")])
    first, last, _ = retention.archivable_range(store.engine, clock()) or (0, 0, 0)
    taken = list(retention.iter_range(store.engine, first, last))  # as the files hold them
    archive_before(store, clock())
    store.append([ps.beat(store, "a")], expected_version={A: 2})  # a's version 3

    assert retention.restore_rows(store.engine, taken) == len(taken)

    assert kept_versions(store, A) == [1, 2, 3]
    assert tails(store) == []
    assert store.stream_version(A) == 3
    assert ClusterCommands(store).configuration().stale_timeout_seconds == 600
    with store.engine.connect() as conn:
        pairs = conn.execute(sa.select(events_table.c.stream, events_table.c.version)).all()
    assert len(pairs) == len(set(pairs))


def test_an_older_archive_is_not_restored_while_a_newer_one_holds_later_versions(store, clock):
    """a's versions 1-2 in the first archive, 3 in the second, none kept: putting back only the
    first would make a's version 2 again (kept events come before archived tails)."""
    store.append([ps.beat(store, "a"), ps.beat(store, "a")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b")])
    older = list(retention.iter_range(store.engine, 1, 2))
    archive_before(store, clock())
    store.append([ps.beat(store, "a")])
    clock.advance(seconds=10)
    store.append([ps.beat(store, "b")])
    newer = list(retention.iter_range(store.engine, 3, 4))
    archive_before(store, clock())
    assert store.stream_version(A) == 3

    with pytest.raises(retention.RestoreOutOfOrder, match="a/service"):
        retention.restore_rows(store.engine, older)
    assert kept_versions(store, A) == [] and store.stream_version(A) == 3

    assert retention.restore_rows(store.engine, newer) == 2
    assert retention.restore_rows(store.engine, older) == 2
    assert kept_versions(store, A) == [1, 2, 3] and tails(store) == []
