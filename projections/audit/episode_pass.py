"""An episode pass over the log (`build`), from its beginning or from a snapshot.

A report over [since, until) only needs the episodes that overlap it, so the pass can start at
the newest snapshot taken before `since`. The snapshot holds the folded `ClusterState`; what the
episode builder needs beyond it is looked up exactly, with index probes only:
- each component's first heartbeat: the first event of its stream (version 1);
- for a component timed out at the snapshot, its `ComponentTimedOut`: the last event of its
  stream (`stream_version`), for the detector, the configuration and the positions;
- components removed and not back: their last `ComponentRemoved` (the type index), and the
  event just before it (a timeout still open when it was removed, which the removal ended, or
  its last heartbeat): their absence is going on;
- which `ConfigurationChanged` set each timeout setting (the cluster stream is short).
Sync periods open at the snapshot start there with no opening event; reports clip them to the
period. So the result over the period equals the pass from the beginning of the log (a test
checks it against snapshots taken at every few positions), whichever snapshot is used, and
losing the snapshots only makes reports slower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import cast

from domain.events import (
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    component_stream,
)
from eventstore.decoding import RecordedEvent
from eventstore.store import EventStore
from projections.audit.episodes import TIMEOUT_SETTING, Episode, EpisodeBuilder, Result, _Track
from projections.readmodel import boundary, snapshots


def seeded_builder(
    store: EventStore, before: datetime, *, up_to: int | None = None, track_sync: bool = False
) -> EpisodeBuilder:
    """An EpisodeBuilder positioned at the newest snapshot recorded before `before` (and at or
    below `up_to`); a plain builder at position 0 when there is none."""
    builder = EpisodeBuilder(track_sync=track_sync)
    limit = store.last_position_at(before, inclusive=False)
    # Archived events are out of the log: the pass starts at the newest archive's boundary
    # snapshot at the earliest (projections/readmodel/boundary.py).
    archived = boundary.newest_archive(store)
    if archived is not None:
        limit = max(limit, archived.last_position)
    if up_to is not None:
        limit = min(limit, up_to)
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=limit) if limit else None
    if snap is None:
        return builder
    state = snapshots.decode(snap.state)
    seed = state.position
    builder.state = state
    changes = store.read_all(types=["ConfigurationChanged"], up_to=seed, limit=None)
    for r in changes:
        for name in cast(ConfigurationChanged, r.event).changes:
            builder.setting_positions[name] = r.position
    builder._timeouts = builder._effective_timeouts()

    removed_last: dict[str, RecordedEvent] = {}
    for r in store.read_all(types=["ComponentRemoved"], up_to=seed, limit=None):
        removed_last[r.stream] = r
    present = {component_stream(c.server, c.name): c for c in state.components()}
    gone = {s: r for s, r in removed_last.items() if s not in present}

    probes = {(s, 1) for s in [*present, *gone]}
    probes |= {(s, c.stream_version) for s, c in present.items() if c.timed_out_at is not None}
    probes |= {(s, r.version - 1) for s, r in gone.items()}
    # The store sorts what it is given: a set will do (its annotation asks for a Sequence).
    found = store.by_stream_version(probes)
    wanted = {
        e.event.last_heartbeat_position
        for e in found.values()
        if isinstance(e.event, ComponentTimedOut) and e.event.last_heartbeat_position
    }
    beats = store.by_position(wanted)

    def setting_position(component: str, before_position: int) -> int | None:
        setting = TIMEOUT_SETTING[component]
        last = None
        for r in changes:
            if (
                r.position < before_position
                and setting in cast(ConfigurationChanged, r.event).changes
            ):
                last = r.position
        return last

    def timeout_episode(r: RecordedEvent) -> Episode:
        e = cast(ComponentTimedOut, r.event)
        beat = (
            beats.get(e.last_heartbeat_position) if e.last_heartbeat_position is not None else None
        )
        positions = [r.position]
        if e.last_heartbeat_position is not None:
            positions.insert(0, e.last_heartbeat_position)
        return Episode(
            e.server,
            e.component,
            "timeout",
            e.expired_at,
            detector=e.detector,
            timeout_seconds=e.timeout_seconds,
            configuration_version=e.configuration_version,
            configuration_position=setting_position(e.component, r.position),
            last_heartbeat_at=beat.recorded_at if beat is not None else None,
            last_heartbeat_position=e.last_heartbeat_position,
            positions=positions,
        )

    def first_seen(stream: str, *known: datetime | None) -> datetime:
        first = found.get((stream, 1))
        if first is not None:
            return first.recorded_at
        # Its first event was archived: the earliest time known of it stands in, before every
        # episode of it the pass holds, so who was current from the seed on is unchanged.
        return min(t for t in (*known, state.recorded_at) if t is not None)

    for stream, c in present.items():
        seen = first_seen(stream, c.last_heartbeat_at, c.timed_out_at)
        track = _Track(seen, c.last_heartbeat_at, c.last_heartbeat_position)
        if c.timed_out_at is not None:
            tail = found.get((stream, c.stream_version))
            if tail is not None and isinstance(tail.event, ComponentTimedOut):
                track.open = timeout_episode(tail)
            else:  # not expected: keep what the state says
                track.open = Episode(c.server, c.name, "timeout", c.timed_out_at)
            builder.episodes.append(track.open)
        builder.tracks[(c.server, c.name)] = track

    for stream, removal in gone.items():
        e = cast(ComponentRemoved, removal.event)
        before_removal = found.get((stream, removal.version - 1))
        last_at = last_position = None
        if before_removal is not None and isinstance(before_removal.event, ComponentTimedOut):
            # The outage the removal ended: it decides when a cluster outage going on began.
            episode = timeout_episode(before_removal)
            episode.removed_at = removal.recorded_at
            episode.close(removal.recorded_at, "removed", removal.position)
            builder.episodes.append(episode)
            last_at, last_position = episode.last_heartbeat_at, episode.last_heartbeat_position
        elif before_removal is not None:
            last_at, last_position = before_removal.recorded_at, before_removal.position
        absence = Episode(
            e.server,
            e.component,
            "removed",
            removal.recorded_at,
            configuration_version=_version_at(changes, removal.position),
            last_heartbeat_at=last_at,
            last_heartbeat_position=last_position,
            positions=[removal.position],
            removed_at=removal.recorded_at,
        )
        builder.absences.append(absence)
        builder.tracks[(e.server, e.component)] = _Track(
            first_seen(stream, last_at, removal.recorded_at),
            last_at,
            last_position,
            present=False,
            absence=absence,
        )

    if track_sync:
        builder.start_sync()
    return builder


def _version_at(changes: list[RecordedEvent], position: int) -> int:
    return sum(1 for r in changes if r.position < position)


def build(
    store: EventStore,
    horizon: datetime,
    *,
    since: datetime | None = None,
    up_to: int | None = None,
    overrides: Mapping[str, int] | None = None,
    track_sync: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Episodes from every event recorded before `horizon` (and at or below `up_to`).

    With `since` (and no overrides) only the episodes overlapping [since, horizon) are sure to
    be complete: the pass starts at the newest snapshot before `since` (seeded_builder)."""
    if since is None and overrides is None:
        # Past archived events "from the beginning" is from the boundary snapshot.
        archived = boundary.newest_archive(store)
        since = archived.before if archived is not None else None
    if since is not None and overrides is None:
        builder = seeded_builder(store, since, up_to=up_to, track_sync=track_sync)
    else:
        builder = EpisodeBuilder(overrides, track_sync=track_sync)
    feed = builder.feed
    events = store.iter_all(after=builder.state.position, up_to=up_to, until=horizon)
    for recorded in reporting(events, progress):
        feed(recorded)
    return builder.finish(horizon)


def reporting(
    events: Iterable[RecordedEvent], progress: Callable[[int], None] | None
) -> Iterator[RecordedEvent]:
    """`events`, telling `progress` (a terminal's progress bar) of every 10,000 and the rest."""
    if progress is None:
        yield from events
        return
    count = 0
    for recorded in events:
        yield recorded
        count += 1
        if count == 10_000:
            progress(count)
            count = 0
    if count:
        progress(count)
