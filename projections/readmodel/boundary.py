"""The read side of retention: the snapshot at an archive's boundary, and where the past went.

Archiving deletes a prefix of the log (eventstore/retention.py) after writing it to files
(retention/). Every reader that folds (time travel, a rebuild, the audit's passes, the
snapshot job, the scheduler's deadline index) starts from the newest snapshot at or before
where it begins, so one snapshot of the state after the last archived event is all they need
to answer at or after the boundary exactly as they did before the delete. The archiver writes
it (`snapshot_boundary`) before deleting anything: a snapshot of events still in the log is
only a cache, so retention stays safe to interrupt at any point.

Before the boundary the events are in the archive's files, not in the log: readers raise
`Archived`, which names the archive (the API answers 410 with its path).

The boundary in time is the archive's `before` (the events recorded before it were archived,
the newest event excepted: eventstore/retention.py): a time before it is refused whenever the
answer needs an archived event, even where the boundary snapshot could give it (from the
last archived event's time up to `before`), so that what is refused is what the operator
archived. In positions it is the archived range itself: a position inside it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domain.state import ClusterState, ServerState, fold
from eventstore import retention
from eventstore.store import EventStore
from projections.readmodel import snapshots


@dataclass(frozen=True, slots=True)
class Archive:
    """One archive done: its positions were deleted from the log and are in `path`."""

    first_position: int
    last_position: int
    before: datetime  # every event recorded before it (and after the previous archive)
    events: int
    path: str


class Archived(ValueError):
    """What was asked for lies in archived history: its events are in `archive.path`, no longer
    in the log. A ValueError, so callers that refuse a bad time (the CLI) refuse this too."""

    def __init__(self, archive: Archive, asked: str):
        self.archive = archive
        super().__init__(
            f"{asked} is in archived history: the events recorded before"
            f" {moment(archive.before)} (positions {archive.first_position} to"
            f" {archive.last_position}) were moved to {archive.path}; restore that archive"
            " (clustermon restore) to travel there"
        )


def moment(at: datetime) -> str:
    """A time as people read it in a sentence: UTC, to the second (to the millisecond when it
    does not fall on a whole second)."""
    at = at.astimezone(UTC)
    if at.microsecond % 1000:
        return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond:06d} UTC"
    if at.microsecond:
        return f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} UTC"
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"


def archives(store: EventStore) -> list[Archive]:
    """The archives whose events are out of the log, lowest positions first."""
    return [
        Archive(
            row["first_position"], row["last_position"], row["before"], row["events"], row["path"]
        )
        for row in retention.archives(store.engine)
    ]


def newest_archive(store: EventStore) -> Archive | None:
    done = archives(store)
    return done[-1] if done else None


def position_at(store: EventStore, at: datetime, last_kept: int, done: list[Archive]) -> int:
    """The last position recorded at or before `at` as the log was before archiving, given
    `last_kept`: the last one still in the log (0: none). It is an archived one when `at` is
    past an archive that the next kept event follows (the state there is its boundary
    snapshot's). Raises Archived when `at` is before such an archive's boundary: the answer
    may need its events. (For an archive after a kept stretch, as a restore of an older
    archive leaves, that refuses times from the stretch's last event up to the archive's first
    one too: the log does not know when the archive's events begin.)"""
    following = store.read_all(after=last_kept, limit=1)
    next_kept = following[0].position if following else None
    last = last_kept
    for archive in done:
        if archive.first_position > last_kept and (
            next_kept is None or archive.last_position < next_kept
        ):
            if at < archive.before:
                raise Archived(archive, moment(at))
            last = archive.last_position
    return last


def holding(position: int, done: list[Archive]) -> Archive | None:
    """The archive whose range holds `position`, if any."""
    for archive in done:
        if archive.first_position <= position <= archive.last_position:
            return archive
    return None


def archived_below(done: list[Archive], position: int) -> Archive | None:
    """The newest archive that ends at or below `position`: a fold up to `position` must start
    at or after its last position (its boundary snapshot or a later one)."""
    below = [a for a in done if a.last_position <= position]
    return below[-1] if below else None


def archived_state(store: EventStore) -> ClusterState | None:
    """The state the archived history folds to (the newest archive's boundary snapshot), for
    passes that would start at the beginning of the log; None when nothing was archived."""
    archive = newest_archive(store)
    if archive is None:
        return None
    return state_across(store, 0, archive.last_position + 1)


def component_seed(store: EventStore, server: str, component: str) -> ClusterState:
    """Where a pass over one component's events and the cluster's starts: the empty state, or
    past archived events the boundary snapshot's configuration and monitor gap with this
    component alone (such a pass folds nothing of the other components)."""
    archived = archived_state(store)
    if archived is None:
        return ClusterState()
    seed = ClusterState(
        configuration=archived.configuration,
        position=archived.position,
        recorded_at=archived.recorded_at,
        monitor_resumed_at=archived.monitor_resumed_at,
    )
    own = archived.servers.get(server)
    if own is not None and component in own.components:
        shell = ServerState(own.name, own.os, own.os_version, own.ip)
        shell.components[component] = own.components[component]
        seed.servers[server] = shell
    return seed


def state_across(store: EventStore, after: int, next_position: int) -> ClusterState | None:
    """For a fold at position `after` whose next event is at `next_position`: when archived
    events lie between (not only holes left by rolled-back appends), the state after the last
    of them, from its boundary snapshot, to fold on from; None when nothing archived lies
    between. Followers call it on a gap only (`next_position > after + 1`): it reads the
    archives. Raises Archived when the boundary snapshot is missing."""
    if next_position <= after + 1:
        return None
    between = [a for a in archives(store) if after < a.last_position < next_position]
    if not between:
        return None
    archive = between[-1]
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=next_position - 1)
    if snap is None or snap.position < archive.last_position:
        raise Archived(archive, f"the state after position {after}")
    return snapshots.decode(snap.state)


def snapshot_boundary(store: EventStore, last_archived_position: int) -> None:
    """Write a snapshot of the folded state after the event at `last_archived_position`
    (folding from the nearest earlier snapshot). Idempotent: a snapshot already at that
    position is kept. Call it before the events up to that position are deleted."""
    if last_archived_position < 1:
        return
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=last_archived_position)
    if snap is not None and snap.position == last_archived_position:
        return
    state = snapshots.decode(snap.state) if snap is not None else ClusterState()
    start = state.position
    # Plain fold: snapshots along the way would be of history about to leave the log.
    state = fold(store.iter_all(after=start, up_to=last_archived_position), state)
    if state.position > start:  # else nothing was recorded since that snapshot: it is the one
        snapshots.keep(store, state)
