"""What-if replay: the episodes the real heartbeats would have produced under another timeout,
beside the ones that did happen, so an operator can tune the timeout before changing it.

One pass over the log feeds two builders: the actual one (recorded timeouts and recoveries)
and a simulated one with the overridden settings pinned (see projections/audit/episodes.py).

**Seeded from a snapshot.** A period [since, until) does not need the pass to start at the
beginning of the log: both builders start at the newest snapshot recorded before `since` (one
is kept there first if the nearest is far: `timetravel.keep_snapshot_before`), so the cost is
the period's events, not the log's. The actual builder is seeded by `episode_pass.seeded_builder`.
The simulated one cannot be: its episodes are not in the log. What decides them before the
seed is little, though: a component's simulated track there depends only on its last heartbeat
and on the configuration changes, monitor gaps and removals after it (a deadline change
settles the deadlines already passed; a removal ends its episode and opens an absence).
So the simulated builder is fed exactly those events before the seed (each component's last
heartbeat, every configuration change, monitor gap and removal, in log order), which leaves it
with the tracks and open episodes the full replay has there; then the snapshot's state and each
component's first heartbeat (which the actual builder looked up) are put in place. Episodes that
ended before the seed are missing, and cannot matter: they ended before `since`, so they
neither overlap the period nor decide who was current during it. A test compares the result
with the replay from position 0, seeded from every few positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from domain.events import ComponentRemoved, ComponentTimedOut, HeartbeatRecorded, component_stream
from domain.state import ClusterState
from eventstore.decoding import RecordedEvent
from eventstore.store import EventStore
from projections.audit.episode_pass import reporting, seeded_builder
from projections.audit.episodes import Episode, EpisodeBuilder, Result
from projections.readmodel import boundary, snapshots, timetravel

# What the simulated builder reacts to, besides heartbeats (see the module's docstring).
_DEADLINE_EVENTS = ["ConfigurationChanged", "MonitorResumed", "ComponentRemoved"]


def replay(
    store: EventStore,
    until: datetime,
    overrides: Mapping[str, int],
    *,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Result, Result]:
    """(actual, what-if) results over every event recorded before `until`. With `since`,
    only what overlaps [since, until) is sure to be complete (the pass starts at a snapshot
    before `since`); without, the pass starts at the beginning of the log."""
    builders = _seeded(store, min(since, until), overrides) if since is not None else None
    if builders is None:
        # From the beginning: past archived events the replay would start without the
        # heartbeats that decide the simulated deadlines (seeding needs them in the log).
        archived = boundary.newest_archive(store)
        if archived is not None:
            raise boundary.Archived(archived, "what a what-if replay starts from")
    actual, simulated = builders or (EpisodeBuilder(), EpisodeBuilder(overrides))
    events = store.iter_all(after=actual.state.position, until=until, batch_size=timetravel.PAGE)
    for recorded in reporting(timetravel.paced(events), progress):
        actual.feed(recorded)
        simulated.feed(recorded)
    return actual.finish(until), simulated.finish(until)


def _seeded(
    store: EventStore, before: datetime, overrides: Mapping[str, int]
) -> tuple[EpisodeBuilder, EpisodeBuilder] | None:
    """Both builders at the newest snapshot recorded before `before` (kept first when the
    nearest one is far), or None: start from the beginning."""
    timetravel.keep_snapshot_before(store, before)
    actual = seeded_builder(store, before)
    seed = actual.state.position
    if seed == 0:
        return None
    with store.engine.connect() as conn:
        snap = snapshots.latest(conn, at_or_before=seed)
    if snap is None or snap.position != seed:  # not expected: seeded_builder read this one
        return None
    # The actual builder looked up every component's first heartbeat (first_seen) already.
    first_seen = {key: track.first_seen for key, track in actual.tracks.items()}
    simulated = _simulation_at(store, snapshots.decode(snap.state), overrides, first_seen)
    return (actual, simulated) if simulated is not None else None


def _simulation_at(
    store: EventStore,
    state: ClusterState,
    overrides: Mapping[str, int],
    first_seen: Mapping[tuple[str, str], datetime],
) -> EpisodeBuilder | None:
    """A what-if builder positioned at `state` (a snapshot's), as the replay from position 0
    leaves it for everything after; None when the log holds something this cannot rebuild."""
    seed = state.position
    deciding = store.read_all(types=_DEADLINE_EVENTS, up_to=seed, limit=None)
    present = {component_stream(c.server, c.name): c for c in state.components()}
    last_removal = {r.stream: r for r in deciding if isinstance(r.event, ComponentRemoved)}
    gone = {stream: r for stream, r in last_removal.items() if stream not in present}

    # Each component's last heartbeat before the seed (for one removed and not back: before
    # its removal, which the event just before the removal is or names).
    beats: set[int] = set()
    for c in present.values():
        if c.last_heartbeat_position is None:
            return None
        beats.add(c.last_heartbeat_position)
    before_removal = store.by_stream_version({(s, r.version - 1) for s, r in gone.items()})
    for stream, removal in gone.items():
        prior = before_removal.get((stream, removal.version - 1))
        if prior is None:
            return None
        if isinstance(prior.event, HeartbeatRecorded):
            beats.add(prior.position)
        elif (
            isinstance(prior.event, ComponentTimedOut)
            and prior.event.last_heartbeat_position is not None
        ):
            beats.add(prior.event.last_heartbeat_position)
        else:
            return None
    last_beats = store.by_position(beats)
    if len(last_beats) != len(beats):
        return None

    builder = EpisodeBuilder(overrides)
    reduced: list[RecordedEvent] = [*deciding, *last_beats.values()]
    for recorded in sorted(reduced, key=lambda r: r.position):
        builder.feed(recorded)
    # The reduced feed left the right tracks, configuration and monitor gap; the snapshot has
    # the whole state (which the fold after the seed needs).
    builder.state = state
    for key, track in builder.tracks.items():
        if key not in first_seen:
            return None
        track.first_seen = first_seen[key]
    return builder


def totals(result: Result, since: datetime, until: datetime) -> dict[str, Any]:
    episodes = result.episodes_in(since, until)
    outages = result.cluster_outages_in(since, until)
    return {
        "episodes": len(episodes),
        "outage_seconds": round(sum(e.overlap(since, until) for e in episodes), 3),
        "failovers": len(result.failovers_in(since, until)),
        "cluster_outages": len(outages),
        "cluster_outage_seconds": round(sum(o.overlap(since, until) for o in outages), 3),
    }


def listing(result: Result, since: datetime, until: datetime) -> dict[str, Any]:
    horizon = result.horizon
    return {
        "episodes": [e.to_dict(horizon) for e in result.episodes_in(since, until)],
        "failovers": [f.to_dict(horizon) for f in result.failovers_in(since, until)],
        "cluster_outages": [o.to_dict(horizon) for o in result.cluster_outages_in(since, until)],
    }


def compare(actual: Result, simulated: Result, since: datetime, until: datetime) -> dict[str, Any]:
    config = actual.state.configuration
    # Each side's episodes grouped by component in one pass (one pass per component was
    # quadratic: 1,000 components x 7,000 episodes took 4 s), in their order.
    sides: dict[str, dict[tuple[str, str], list[Episode]]] = {}
    for name, result in (("actual", actual), ("what_if", simulated)):
        grouped = sides[name] = {}
        for e in result.episodes_in(since, until):
            grouped.setdefault((e.server, e.component), []).append(e)
    per_component = []
    for server, component in sorted({k for grouped in sides.values() for k in grouped}):
        row: dict[str, Any] = {"server": server, "component": component}
        for name, grouped in sides.items():
            mine = grouped.get((server, component), [])
            row[name] = {
                "episodes": len(mine),
                "outage_seconds": round(sum(e.overlap(since, until) for e in mine), 3),
            }
        per_component.append(row)
    return {
        "period": {"since": since, "until": until},
        "position": actual.position,
        "settings": {
            "actual": {
                "stale_timeout_seconds": config.stale_timeout_seconds,
                "web_stale_timeout_seconds": config.web_stale_timeout_seconds,
            },
            "what_if": dict(simulated.overrides),
        },
        "summary": {
            "actual": totals(actual, since, until),
            "what_if": totals(simulated, since, until),
        },
        "components": per_component,
        "actual": listing(actual, since, until),
        "what_if": listing(simulated, since, until),
    }


def what_if(
    store: EventStore,
    since: datetime,
    until: datetime,
    overrides: Mapping[str, int],
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    actual, simulated = replay(store, until, overrides, since=since, progress=progress)
    return compare(actual, simulated, since, until)
