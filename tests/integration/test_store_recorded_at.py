"""recorded_at never decreases along positions (time travel and the staleness rules rely on it).

The stamp comes from the injected clock, read before the append's ordering lock; an append whose
stamp is earlier than the last stored event's is stored with the last event's recorded_at. The
sizes 1, 5 and 40 exercise the three PostgreSQL paths (clustermon_append_one, clustermon_append,
prepare + COPY); SQLite runs them all in `_append`.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from domain.events import HeartbeatRecorded
from eventstore import EventStore, create_engine, open_store, write_connection
from eventstore.postgres import COPY_BATCH
from eventstore.store import NewEvent

T = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SIZES = [1, 5, 40]
assert SIZES[-1] >= COPY_BATCH > SIZES[1]


def beats(n: int, occurred_at: datetime | None = None) -> list[NewEvent]:
    return [
        NewEvent(
            HeartbeatRecorded(server=f"web{i:02}", component="service", sent_at=T),
            event_id=uuid.uuid4(),
            occurred_at=occurred_at,
        )
        for i in range(n)
    ]


def stamps_along_positions(store: EventStore) -> list[datetime]:
    return [r.recorded_at for r in store.read_all(limit=None)]


@pytest.mark.parametrize("size", SIZES)
def test_an_append_with_an_earlier_clock_is_stamped_with_the_last_events_time(store, clock, size):
    clock.now = T
    store.append(beats(1))
    clock.now = T - timedelta(minutes=5)  # this writer's clock reads earlier

    result = store.append(beats(size))

    assert [r.recorded_at for r in result.recorded] == [T] * size
    # Without a sender's clock, occurred_at is the stamp stored.
    assert [r.occurred_at for r in result.recorded] == [T] * size
    read = store.read_all(after=1, limit=None)
    assert [(r.position, r.recorded_at, r.occurred_at) for r in read] == [
        (r.position, T, T) for r in result.recorded
    ]
    assert stamps_along_positions(store) == [T] * (1 + size)


@pytest.mark.parametrize("size", SIZES)
def test_a_later_clock_is_stored_as_read(store, clock, size):
    clock.now = T
    store.append(beats(1))
    later = clock.advance(seconds=1)

    result = store.append(beats(size, occurred_at=T - timedelta(hours=1)))

    assert {r.recorded_at for r in result.recorded} == {later}
    assert {r.occurred_at for r in result.recorded} == {T - timedelta(hours=1)}
    assert stamps_along_positions(store) == [T] + [later] * size


@pytest.mark.parametrize("size", SIZES)
def test_recorded_at_passed_to_append_is_the_stamp_and_is_still_clamped(store, clock, size):
    clock.now = T
    judged_at = T + timedelta(hours=3)  # not the store's clock: the caller's

    first = store.append(beats(size), recorded_at=judged_at)
    assert {r.recorded_at for r in first.recorded} == {judged_at}
    assert {r.recorded_at for r in store.read_all(limit=None)} == {judged_at}

    # Earlier than the last stored event: raised to it, like a clock reading.
    second = store.append(beats(size), recorded_at=T + timedelta(hours=1))
    assert {r.recorded_at for r in second.recorded} == {judged_at}

    third = store.append(beats(1), recorded_at=judged_at + timedelta(microseconds=1))
    assert third.recorded[0].recorded_at == judged_at + timedelta(microseconds=1)
    assert stamps_along_positions(store) == [judged_at] * (2 * size) + [
        judged_at + timedelta(microseconds=1)
    ]


def test_a_clamped_append_inside_the_callers_transaction(store, engine, clock):
    clock.now = T
    store.append(beats(1))
    clock.now = T - timedelta(days=1)
    with write_connection(engine) as conn, conn.begin():
        small = store.append(beats(2), connection=conn)
        large = store.append(beats(COPY_BATCH), connection=conn)
    assert {r.recorded_at for r in small.recorded + large.recorded} == {T}
    assert stamps_along_positions(store) == [T] * (3 + COPY_BATCH)


def _wait_for_advisory_lock_waiter(conn: sa.Connection, deadline: float) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
        " AND datname = current_database()"
    )
    while True:
        waiting = conn.execute(query).scalar_one()
        conn.rollback()  # pg_stat_activity is a snapshot per transaction
        if waiting:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the second writer never waited for the ordering lock")
        time.sleep(0.01)


@pytest.mark.parametrize("size", SIZES)
def test_a_writer_that_waited_for_the_lock_is_not_stamped_before_the_one_it_waited_for(
    pg_database_url, size
):
    """The race itself: writer B reads its clock (10:00), then waits for the ordering lock held
    by writer A, which stores 10:01 and commits. B's events land after A's; before the fix they
    were stamped 10:00, earlier than the event before them."""
    engine = create_engine(pg_database_url)
    try:
        writer_a = open_store(engine, lambda: T + timedelta(minutes=1))
        writer_b = open_store(engine, lambda: T)
        results, errors = [], []

        def append_b():
            try:
                results.append(writer_b.append(beats(size)))
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)

        with engine.connect() as watcher:
            with write_connection(engine) as conn_a, conn_a.begin():
                # A's append takes the lock inside A's transaction and holds it until commit.
                a = writer_a.append(beats(1), connection=conn_a)
                thread = threading.Thread(target=append_b)
                thread.start()
                _wait_for_advisory_lock_waiter(watcher, time.monotonic() + 20)
            thread.join(timeout=20)
        assert not thread.is_alive() and not errors, errors

        (b,) = results
        assert min(r.position for r in b.recorded) > a.recorded[0].position
        assert {r.recorded_at for r in b.recorded} == {T + timedelta(minutes=1)}
        stamps = stamps_along_positions(writer_a)
        assert stamps == sorted(stamps) == [T + timedelta(minutes=1)] * (1 + size)
    finally:
        engine.dispose()
