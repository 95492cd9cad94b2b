"""A follower of the log never skips an event, with concurrent writer processes on PostgreSQL.

Writers append many small transactions and then sleep a random few milliseconds before they
commit, so commits would land out of position order; a follower meanwhile reads
`read_all(after=last_seen)` in a loop, as projections and the live stream do. With the append
lock the follower must see exactly the final log, in order. With the lock switched off the same
test must catch the follower missing events: that is the proof the test can see the failure.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime

import pytest

from domain.events import HeartbeatRecorded
from eventstore import EventStore, create_engine, open_store, write_connection
from eventstore.store import NewEvent

WRITERS = 4
TRANSACTIONS = 80  # per writer
DEADLINE_SECONDS = 60


def _writer(url: str, index: int, serialize: bool, barrier, done) -> None:
    engine = create_engine(url)
    store = open_store(engine, serialize_appends=serialize)
    sent_at = datetime(2026, 11, 27, 10, tzinfo=UTC)
    try:
        barrier.wait(timeout=DEADLINE_SECONDS)
        for i in range(TRANSACTIONS):
            # Each writer has its own streams: without the lock, versions must not collide.
            batch = [
                NewEvent(
                    HeartbeatRecorded(
                        server=f"w{index}-s{(i + j) % 7}", component="service", sent_at=sent_at
                    ),
                    event_id=uuid.uuid4(),
                )
                for j in range(1 + i % 3)
            ]
            if i % 10 == 9:
                store.append(batch)  # the store's own transaction now and then
                continue
            with write_connection(engine) as conn, conn.begin():
                store.append(batch, connection=conn)
                # Hold the transaction open after the positions were drawn.
                conn.exec_driver_sql("SELECT pg_sleep(random() * 0.003)")
    finally:
        engine.dispose()
        done.set()


def follow(store: EventStore, writers_done) -> list:
    """What a follower sees: pages after the last position it saw, until writers are done."""
    seen = []
    last = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        finished = all(e.is_set() for e in writers_done)
        page = store.read_all(after=last, limit=500)
        seen.extend(page)
        if page:
            last = page[-1].position
        elif finished:
            return seen
    raise AssertionError("writers did not finish in time")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("serialize", [True, False], ids=["guarded", "guard-off"])
def test_follower_sees_every_committed_event_once_in_order(pg_database_url, serialize):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS + 1)
    done = [ctx.Event() for _ in range(WRITERS)]
    procs = [
        ctx.Process(target=_writer, args=(pg_database_url, k, serialize, barrier, done[k]))
        for k in range(WRITERS)
    ]
    for p in procs:
        p.start()
    engine = create_engine(pg_database_url)
    try:
        store = open_store(engine)
        barrier.wait(timeout=DEADLINE_SECONDS)
        seen = follow(store, done)
        for p in procs:
            p.join(timeout=DEADLINE_SECONDS)
        assert [p.exitcode for p in procs] == [0] * WRITERS
        log = store.read_all(limit=None)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        engine.dispose()

    assert len(log) == sum(1 + i % 3 for i in range(TRANSACTIONS)) * WRITERS
    seen_ids = [r.event_id for r in seen]
    assert len(seen_ids) == len(set(seen_ids))  # never twice
    if serialize:
        assert seen_ids == [r.event_id for r in log]  # everything, in the log's order
    else:
        # Without the guard, a commit below the follower's last position is never read.
        missed = {r.event_id for r in log} - set(seen_ids)
        assert missed, "the follower missed nothing: this test cannot see the failure"
