"""The cluster as it was: nearest snapshot at or before + fold of the tail, evaluated then.

`at` is resolved to a position first: the last event recorded at or before `at`. That relies on
`recorded_at` never decreasing along positions, which the store gives by stamping events while
it holds the append lock (only a backwards step of the server's wall clock could break it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from domain.events import RecordedEvent
from domain.state import ClusterState, fold
from eventstore import retention
from eventstore.store import EventStore
from projections.readmodel import boundary, snapshots
from projections.readmodel.gcpause import collector_paused
from projections.readmodel.tables import snapshots as snapshots_table
from projections.readmodel.view import cluster_view

_SHORT_TAIL = 10 * snapshots.EVERY_EVENTS
# A fold longer than the scheduler's cadence keeps snapshots (snapshots.fold_keeping): the
# next read at that time folds nothing, one before it at most snapshots.KEEP_EVERY events.
KEEP_AFTER = snapshots.EVERY_EVENTS
PACE_EVERY = 200  # events folded between two chances for other requests to run (paced)
# Rows per page of a long fold: turning a page of rows into Python objects is one stretch
# without a pause (~6 ms per 1,000 events; the store's default 10,000 held a gevent worker
# for ~60 ms at a time).
PAGE = 1_000


def _aware(at: datetime) -> datetime:
    # A time without a zone is read as UTC, the zone of every time we store.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def resolve(
    store: EventStore, *, at: datetime | None = None, position: int | None = None
) -> tuple[int, datetime]:
    """(last position folded, time the staleness is evaluated at) for a time or a position.
    Raises ValueError for what cannot be shown: boundary.Archived for archived history."""
    if at is not None and position is not None:
        raise ValueError("give a time or a position, not both")
    if position is not None:
        return _resolve_position(store, position)
    at = (_aware(at) if at is not None else store.clock()).astimezone(UTC)
    first = store.oldest_recorded_at()
    if first is None:
        raise ValueError("the event log is empty: there is no cluster to show at any time")
    last = store.last_position_at(at)
    done = boundary.archives(store)
    if done:
        last = boundary.position_at(store, at, last, done)
    if last == 0:
        raise _before_the_log(at, first)
    return last, at


def _resolve_position(store: EventStore, position: int) -> tuple[int, datetime]:
    if position < 1:
        raise ValueError(f"position must be at least 1, got {position}")
    head = store.head_position()
    if position > head:
        raise ValueError(f"position {position} is beyond the head of the log ({head})")
    done = boundary.archives(store)
    inside = boundary.holding(position, done)
    if inside is not None:
        raise boundary.Archived(inside, f"position {position}")
    # The position may be a hole (a rolled-back append): use the event before it.
    try:
        last, when = store.event_at_or_before(position)
    except sa.exc.NoResultFound:
        last, when = 0, None
    below = boundary.archived_below(done, position)
    if below is not None and below.last_position > last:
        # A hole just past an archive: the event before it is the archive's last one.
        snap = _boundary_snapshot(store, below, f"position {position}")
        return snap.position, snap.recorded_at.astimezone(UTC)
    if when is None:
        raise ValueError(f"nothing was recorded at or before position {position}")
    return last, when.astimezone(UTC)


def _before_the_log(at: datetime, first: datetime) -> ValueError:
    return ValueError(
        f"{boundary.moment(at)} is before the log, whose first event was recorded at"
        f" {boundary.moment(first)}"
    )


def _boundary_snapshot(store: EventStore, archive: boundary.Archive, asked: str) -> sa.Row:
    """The snapshot at `archive`'s last position, which stands for its events; Archived when
    it is missing (an archive made without one: what follows it cannot be folded)."""
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=archive.last_position)
    if snap is None or snap.position != archive.last_position:
        raise boundary.Archived(archive, asked)
    return snap


def _locate_query() -> sa.Select:
    """(first recorded_at, last position recorded at or before :at, the last archived
    position, the newest snapshot at or before that position), built once: constructing it
    costs more than running it."""
    snap, older = snapshots_table.c, snapshots_table.alias("older")
    at = sa.bindparam("at", type_=EventStore.RECORDED_AT_TYPE)
    first = EventStore.first_recorded_at_query()
    last = EventStore.last_position_at_query(at)
    through = retention.archived_through_query()
    target = sa.select(
        first.label("first"), last.label("last"), through.label("through")
    ).subquery()
    newest = (
        sa.select(sa.func.max(older.c.position))
        .where(older.c.position <= target.c.last)
        .correlate(target)
        .scalar_subquery()
    )
    columns = (target.c.first, target.c.last, target.c.through, snap.position, snap.state)
    return sa.select(*columns).select_from(
        target.outerjoin(snapshots_table, snap.position == newest)
    )


_LOCATE = _locate_query()


def _locate(store: EventStore, at: datetime) -> tuple[int, sa.Row | None]:
    """(last position recorded at or before `at`, the newest snapshot at or before it) in one
    round trip: under load every round trip waits for the database to be scheduled, and a
    time-travel query used to make four. Past an archive's boundary snapshot that stays one
    round trip; nearer to it, the archives are read (boundary.position_at)."""
    with store.engine.connect() as conn:
        row = conn.execute(_LOCATE, {"at": at}).one()
    if row.first is None:
        raise ValueError("the event log is empty: there is no cluster to show at any time")
    if row.through is not None and (row.position is None or row.position < row.through):
        # The fold would start before an archive ends, or `at` is before every kept event.
        last = boundary.position_at(store, at, row.last or 0, boundary.archives(store))
        if last == 0:
            raise _before_the_log(at, row.first)
        return last, None
    if at < row.first:
        raise _before_the_log(at, row.first)
    return row.last, (row if row.position is not None else None)


def _state_up_to(store: EventStore, position: int, snap: sa.Row | None = None) -> ClusterState:
    """The state after `position`, from `snap` (the newest snapshot at or before it, past
    every archive below it: _locate's fast path) or from the one found here, which must not
    start before an archive that ends at or below `position` (the fold would skip its events
    without a word): Archived then."""
    if snap is None:
        with store.engine.connect() as conn:
            snap = snapshots.latest(conn, at_or_before=position)
        below = boundary.archived_below(boundary.archives(store), position)
        if below is not None and (snap is None or snap.position < below.last_position):
            raise boundary.Archived(below, f"the state at position {position}")
    state = snapshots.decode(snap.state) if snap is not None else ClusterState()
    return fold_to(store, state, position)


def fold_to(store: EventStore, state: ClusterState, position: int) -> ClusterState:
    """`state` (from a snapshot, or empty) folded up to `position`. A tail longer than the
    snapshot cadence means no snapshot was taken there (no scheduler running, or not yet):
    the fold then keeps snapshots along the way, so that one slow read makes the next ones
    near that time cheap instead of every viewer paying for a fold from the start."""
    tail = position - state.position
    if tail <= 0:
        return state
    # A tail within the snapshot cadence is one query; a longer one (no snapshot yet) is
    # paged, so the whole log never has to fit in memory.
    events = (
        store.read_all(after=state.position, limit=None, up_to=position)
        if tail <= _SHORT_TAIL
        else store.iter_all(after=state.position, up_to=position, batch_size=PAGE)
    )
    if tail > KEEP_AFTER:
        return snapshots.fold_keeping(store, state, paced(events), last_after=KEEP_AFTER)
    return fold(events, state)


def paced(events: Iterable[RecordedEvent], every: int = PACE_EVERY) -> Iterator[RecordedEvent]:
    """`events`, letting the process's other requests run every `every` of them. A long fold
    is CPU only: on a gevent worker (`serve` on PostgreSQL) it is one greenlet that holds the
    worker's loop, and every heartbeat sent to that worker, until it waits for the database
    (a page of PAGE events). Threads are left alone: the interpreter already makes the thread
    holding the GIL hand it over to one that waited 5 ms (its switch interval), and a thread
    that gives the GIL up only to take it straight back (`time.sleep(0)`) can keep that
    waiting thread from ever seeing its turn."""
    gevent = sys.modules.get("gevent.monkey")
    if gevent is None or not gevent.is_module_patched("time"):
        yield from events
        return
    for count, recorded in enumerate(events, 1):
        if count % every == 0:
            time.sleep(0)  # gevent's sleep: back to the loop, which runs what is ready
        yield recorded


def keep_snapshot_before(store: EventStore, before: datetime) -> None:
    """Make sure a snapshot within KEEP_AFTER events of the last event recorded before
    `before` exists (folding up to it once if not), for passes that start at the newest
    snapshot before a time: the audit's (projections/audit/episode_pass.py, whatif.py)."""
    position = store.last_position_at(before, inclusive=False)
    if position == 0:
        return
    with store.engine.connect() as conn:
        near = snapshots.latest(conn, at_or_before=position, with_state=False)
    if near is None or position - near.position > KEEP_AFTER:
        _state_up_to(store, position)


def state_at(
    store: EventStore, *, at: datetime | None = None, position: int | None = None
) -> ClusterState:
    """The folded state after every event recorded at or before `at` (or up to `position`)."""
    last, _ = resolve(store, at=at, position=position)
    return _state_up_to(store, last)


def view_at(
    store: EventStore, *, at: datetime | None = None, position: int | None = None
) -> dict[str, Any]:
    """The cluster view at `at` (staleness evaluated at `at`) or just after `position`
    (evaluated at that event's recorded_at). Raises ValueError for a time before the log, a
    position beyond its head, or both given (boundary.Archived, a ValueError, for a time or a
    position in archived history); neither means now."""
    if at is not None and position is None:
        at = _aware(at).astimezone(UTC)
        last, snap = _locate(store, at)
    else:
        snap = None
        last, at = resolve(store, at=at, position=position)
    with collector_paused():  # a cycle-free build of ~20,000 objects: see gcpause
        return cluster_view(_state_up_to(store, last, snap), at)
