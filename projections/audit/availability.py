"""Availability strips: per component, its states over the last day or week, and its uptime.

A strip is a list of segments `[start, end, state, reason]` (seconds after the window's start;
`reason` indexes a table of reasons shared by every strip of the answer). States, in the order
that wins where they overlap: `removed` (by hand, until its next heartbeat), `gap` (the monitor
was down: `MonitorResumed`), `stale` (an outage episode), `current` (the rest of the time the
component was known). The uptime beside it is the report's (`reports.summarize`) over the same
window, so the strip and the daily report never disagree.

Why not `episode_pass.build`: it folds every heartbeat since the snapshot before the window,
millions of events at 1,000 servers, for an answer the page asks for every minute. Episodes
only change at a few events: timeouts, recoveries, removals, configuration changes, monitor
gaps, a component's first heartbeat and the heartbeat that brings a removed component back.
`sparse_episodes` feeds the same EpisodeBuilder only those (read with the type index and
index probes), then gives every present component its last heartbeat from the current state
before `finish` judges staleness at the horizon. A test checks it against the full pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, cast

from domain.durations import format_duration
from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
    component_stream,
)
from domain.state import ClusterState
from eventstore.decoding import RecordedEvent
from eventstore.store import EventStore
from projections.audit import reports
from projections.audit.episode_pass import seeded_builder
from projections.audit.episodes import COMPONENT_EVENTS, Episode, Key, Result

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
STATES = ("current", "stale", "removed", "gap")
# The events episodes change at; heartbeats are probed apart (see the module docstring).
EPISODE_TYPES = tuple(
    t.type
    for t in (
        ComponentTimedOut,
        ComponentRecovered,
        ComponentRemoved,
        ConfigurationChanged,
        MonitorResumed,
    )
)
_PRIORITY = {"current": 0, "stale": 1, "gap": 2, "removed": 3}
_TIMEOUT_NAME = {"service": "Service stale timeout", "web": "Web window"}


@dataclass(slots=True)
class Removal:
    key: Key
    at: datetime
    back_at: datetime | None  # its next heartbeat; None: not back (at the horizon)


@dataclass(slots=True)
class Sparse:
    result: Result
    removals: list[Removal]
    gaps: list[tuple[datetime, datetime]]  # (down_since, resumed_at)


def sparse_episodes(
    store: EventStore, since: datetime, horizon: datetime, current: ClusterState
) -> Sparse:
    """The episodes overlapping [since, horizon), as `episode_pass.build(store, horizon,
    since=since, up_to=current.position)` finds them, from the few events they depend on.
    `current`: the folded state at the head (its last heartbeats judge staleness)."""
    head = current.position
    builder = seeded_builder(store, since, up_to=head)
    seed = builder.state.position

    def in_range(r: RecordedEvent) -> bool:
        return seed < r.position <= head and r.recorded_at < horizon

    # One read per type: with several types SQLite walks the positions instead of the type
    # index (0.7 s at 600k events, 1 ms per type).
    events = sorted(
        (
            r
            for kind in EPISODE_TYPES
            for r in store.read_all(seed, None, types=[kind], up_to=head, until=horizon)
        ),
        key=lambda r: r.position,
    )
    feed = {r.position: r for r in events}

    # The first heartbeat of every component first seen after the seed.
    streams = {component_stream(c.server, c.name) for c in current.components()}
    streams |= {r.stream for r in events if isinstance(r.event, COMPONENT_EVENTS)}
    known = {component_stream(*key) for key in builder.tracks}
    for r in store.by_stream_version({(s, 1) for s in streams - known}).values():
        if in_range(r):
            feed[r.position] = r

    # The heartbeat that brings a removed component back: the next event of its stream.
    gone = [component_stream(*k) for k, t in builder.tracks.items() if not t.present]
    before_seed = (  # (no streams would mean every stream to read_all)
        store.read_all(0, None, types=["ComponentRemoved"], streams=gone, up_to=seed)
        if gone
        else []
    )
    removals = {r.position: r for r in [*_last_per_stream(before_seed), *events]}
    removals = {p: r for p, r in removals.items() if isinstance(r.event, ComponentRemoved)}
    back = store.by_stream_version({(r.stream, r.version + 1) for r in removals.values()})
    returns: dict[int, datetime] = {}
    for r in removals.values():
        nxt = back.get((r.stream, r.version + 1))
        if nxt is not None and isinstance(nxt.event, HeartbeatRecorded) and in_range(nxt):
            feed[nxt.position] = nxt
            returns[r.position] = nxt.recorded_at

    for position in sorted(feed):
        builder.feed(feed[position])
    # The fold skipped the heartbeats in between: give each present component its last one.
    for c in current.components():
        track = builder.tracks.get((c.server, c.name))
        if track is not None and track.present and c.last_heartbeat_at is not None:
            track.last_heartbeat_at = c.last_heartbeat_at
            track.last_heartbeat_position = c.last_heartbeat_position
    result = builder.finish(horizon)
    result.position = head  # every event up to the head was considered, if not folded

    def removal(r: RecordedEvent) -> Removal:
        e = cast(ComponentRemoved, r.event)
        return Removal((e.server, e.component), r.recorded_at, returns.get(r.position))

    gaps = [
        (e.down_since, e.resumed_at)
        for r in store.read_all(0, None, types=["MonitorResumed"], up_to=head, until=horizon)
        for e in [cast(MonitorResumed, r.event)]
        if e.resumed_at > since
    ]
    return Sparse(result, [removal(r) for _, r in sorted(removals.items())], gaps)


def _last_per_stream(records: Iterable[RecordedEvent]) -> list[RecordedEvent]:
    last: dict[str, RecordedEvent] = {}
    for r in records:
        last[r.stream] = r
    return list(last.values())


# --- strips -----------------------------------------------------------------------------------


class Reasons:
    """The reasons table: one entry per distinct text, referred to by its index."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._ids: dict[tuple[str, str], int] = {}

    def id(self, state: str, text: str) -> int:
        key = (state, text)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.rows)
            self.rows.append({"id": found, "state": state, "text": text})
        return found


def stale_reason(e: Episode) -> str:
    if e.cause == "removed":  # a removal episode: its `removed` segment covers it
        return "removed from the cluster by hand"
    name = _TIMEOUT_NAME.get(e.component, "timeout")
    text = "no heartbeat within the " + (
        f"{name} ({format_duration(e.timeout_seconds)})" if e.timeout_seconds else name
    )
    if e.inferred:
        return text + "; past its deadline, the timeout is not recorded yet"
    return text + (f"; timeout recorded by {e.detector}" if e.detector else "")


CURRENT_REASON = "heartbeats arrived within the timeout"
REMOVED_REASON = "removed from the cluster by hand (until its next heartbeat)"
GAP_REASON = "the monitor was down: nothing could be recorded or judged"


def strips(sparse: Sparse, since: datetime, until: datetime) -> dict[str, Any]:
    """Every component's strip and uptime over [since, until), sorted by server and
    component, with the shared reasons table."""
    result = sparse.result
    summary = reports.summarize(result, since, until)
    reasons = Reasons()
    current_id = reasons.id("current", CURRENT_REASON)
    by_key: dict[Key, list[Episode]] = {}
    for e in result.episodes_in(since, until):
        by_key.setdefault((e.server, e.component), []).append(e)
    removed: dict[Key, list[Removal]] = {}
    for r in sparse.removals:
        removed.setdefault(r.key, []).append(r)
    gaps = [(max(a, since), min(b, until)) for a, b in sparse.gaps if a < until and b > since]
    gap_id = reasons.id("gap", GAP_REASON) if gaps else -1
    span = (until - since).total_seconds()

    def offset(at: datetime) -> float:
        return round(min(max((at - since).total_seconds(), 0.0), span), 3)

    components = []
    for row in summary["components"]:
        key = (row["server"], row["component"])
        start = max(since, result.first_seen[key])
        paint: list[tuple[float, float, str, int]] = []
        for e in by_key.get(key, []):
            if e.cause == "removed":
                continue  # drawn from the removals, whatever ends a removal episode
            end = e.end or until
            if e.removed_at is not None:
                end = min(end, e.removed_at)
            paint.append(
                (offset(e.start), offset(end), "stale", reasons.id("stale", stale_reason(e)))
            )
        for g0, g1 in gaps:
            if g1 > start:
                paint.append((offset(max(g0, start)), offset(g1), "gap", gap_id))
        for r in removed.get(key, []):
            end = r.back_at or until
            if r.at < until and end > since:
                paint.append(
                    (offset(r.at), offset(end), "removed", reasons.id("removed", REMOVED_REASON))
                )
        components.append(
            {
                "server": key[0],
                "component": key[1],
                "present": key in result.present,
                "uptime_percent": row["uptime_percent"],
                "observed_seconds": row["observed_seconds"],
                "outage_seconds": row["outage_seconds"],
                "outages": row["outages"],
                "segments": _flatten(offset(start), offset(until), paint, current_id),
            }
        )
    return {
        "since": since,
        "until": until,
        "position": result.position,
        "reasons": reasons.rows,
        "components": components,
    }


def _flatten(
    start: float, end: float, paint: list[tuple[float, float, str, int]], base: int
) -> list[list[Any]]:
    """Non-overlapping segments covering [start, end): `current` under the painted intervals,
    the state of higher priority winning where they overlap; equal neighbours merged."""
    paint = [(max(a, start), min(b, end), s, r) for a, b, s, r in paint if b > start and a < end]
    cuts = sorted({start, end, *(a for a, *_ in paint), *(b for _, b, *_ in paint)})
    out: list[list[Any]] = []
    for a, b in pairwise(cuts):
        state, reason = "current", base
        for p0, p1, s, r in paint:
            if p0 <= a and b <= p1 and _PRIORITY[s] > _PRIORITY[state]:
                state, reason = s, r
        if out and out[-1][2] == state and out[-1][3] == reason and out[-1][1] == a:
            out[-1][1] = b
        else:
            out.append([a, b, state, reason])
    return out


def availability(
    store: EventStore, window: str, now: datetime, current: ClusterState
) -> dict[str, Any]:
    """Every component's strip over the last `window` ("24h" or "7d") before `now`."""
    since = now - WINDOWS[window]
    answer = strips(sparse_episodes(store, since, now, current), since, now)
    answer["window"] = window
    return answer
