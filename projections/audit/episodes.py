"""Outage episodes per component, and failover / cluster-outage episodes, from the log.

One pass over the log in position order (the same order every reader follows), next to the
shared fold (`domain.state.apply`), builds:

- **Component outage episodes.** Start: the logical expiry of a recorded `ComponentTimedOut`
  (`expired_at`). End (`end_cause`): the `ComponentRecovered` that closes it (`recovered`), or
  the component's manual removal (`removed`): a removed component is out of the cluster, so
  nothing of it is down any more, and its outage never stays `ongoing` after that. Each episode
  keeps the configuration that was in force (version and the position of the
  `ConfigurationChanged` that set the timeout), the detector, and the positions of the events it
  was built from, so an auditor can check it against `GET /events`. An episode still open at the
  horizon has `end = None`.
- **Absences** (`Result.absences`): from a manual removal to the component's next heartbeat. Not
  outages (the operator took it out on purpose): reports leave that time out of the component's
  observed span. Same shape as an episode, with `cause = "removed"`.
  If the rules say a component is stale at the horizon but no timeout was recorded yet (the
  sweep runs every second, so only the last instants), an `inferred` episode is added: it is what
  the live view showed at that time.
- **Cluster-level episodes, over Service components only** (a Web node that is quiet says little
  about the work). A Service component is *current* from its first heartbeat on, outside its
  outage episodes. A **failover**: a Service component times out while at least one other
  Service component stays current (the work moved to those). A **cluster outage**: an interval
  with no current Service component at all (once at least one was ever seen). A removed Service
  component is not current during its absence. Removals by hand are deliberate, so they are not
  counted as failovers, but removing the last current Service component does start a cluster
  outage.
- Optionally (`track_sync=True`, for reports) the periods during which a server's software
  version or encryption key was out of sync, evaluated with the same rules as the view each time
  something they depend on changes (stamped with the `recorded_at` of that event), kept up to
  date incrementally by `sync_periods.SyncTracker`.

**What-if mode** (`overrides={"stale_timeout_seconds": 120}`): recorded timeouts and recoveries
are ignored and episodes are derived from the real heartbeats, removals, configuration changes
and monitor gaps by the staleness rule (`rules.deadline`) with the overridden settings pinned.
Deadline changes (a configuration change, a monitor gap) first settle every deadline that had
already passed under the old rule, as the sweep would have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
)
from domain.state import ClusterState, apply
from eventstore.store import RecordedEvent
from projections.audit.sync_periods import SyncPeriod, SyncTracker

WHAT_IF_DETECTOR = "what-if"
COMPONENT_EVENTS = (HeartbeatRecorded, ComponentRemoved, ComponentTimedOut, ComponentRecovered)
TIMEOUT_SETTING = {"web": "web_stale_timeout_seconds", "service": "stale_timeout_seconds"}

Key = tuple[str, str]  # (server, component)


@dataclass(slots=True)
class Episode:
    server: str
    component: str
    cause: str  # "timeout"; "removed" for an absence (Result.absences)
    start: datetime
    end: datetime | None = None  # None: still going on at the horizon
    # "recovered" or "removed" ("returned": an absence's next heartbeat); None while it goes on
    end_cause: str | None = None
    detector: str | None = None
    timeout_seconds: int | None = None
    configuration_version: int = 0
    configuration_position: int | None = None  # the change that set the timeout; None: default
    last_heartbeat_at: datetime | None = None
    last_heartbeat_position: int | None = None
    positions: list[int] = field(default_factory=list)
    removed_at: datetime | None = None  # removed by hand then (an outage ends there)
    inferred: bool = False  # stale by the rules at the horizon, no timeout recorded yet

    def seconds(self, horizon: datetime) -> float:
        return max(0.0, ((self.end or horizon) - self.start).total_seconds())

    def close(self, at: datetime, cause: str, position: int) -> None:
        self.end, self.end_cause = at, cause
        self.positions.append(position)

    def overlap(self, since: datetime, until: datetime) -> float:
        start = max(self.start, since)
        end = min(self.end or until, until)
        return max(0.0, (end - start).total_seconds())

    def overlaps(self, since: datetime, until: datetime) -> bool:
        return self.start < until and (self.end is None or self.end > since)

    def to_dict(self, horizon: datetime) -> dict[str, Any]:
        return {
            "server": self.server,
            "component": self.component,
            "cause": self.cause,
            "start": self.start,
            "end": self.end,
            "end_cause": self.end_cause,
            "ongoing": self.end is None,
            "duration_seconds": round(self.seconds(horizon), 3),
            "detector": self.detector,
            "inferred": self.inferred,
            "removed_at": self.removed_at,
            "configuration": {
                "version": self.configuration_version,
                "timeout_seconds": self.timeout_seconds,
                "set_by_position": self.configuration_position,
            },
            "last_heartbeat": {
                "at": self.last_heartbeat_at,
                "position": self.last_heartbeat_position,
            },
            "positions": sorted(set(self.positions)),
        }


@dataclass(slots=True)
class Failover:
    episode: Episode
    taken_over_by: list[Key]

    def to_dict(self, horizon: datetime) -> dict[str, Any]:
        e = self.episode
        return {
            "at": e.start,
            "server": e.server,
            "component": e.component,
            # Removed while stale: its outage ended, but nothing recovered.
            "recovered_at": e.end if e.end_cause != "removed" else None,
            "removed_at": e.removed_at,
            "outage_seconds": round(e.seconds(horizon), 3),
            "taken_over_by": [server for server, _ in self.taken_over_by],
            "episode": e.to_dict(horizon),
            "positions": sorted(set(e.positions)),
        }


@dataclass(slots=True)
class ClusterOutage:
    start: datetime
    end: datetime | None
    episodes: list[Episode]

    def seconds(self, horizon: datetime) -> float:
        return max(0.0, ((self.end or horizon) - self.start).total_seconds())

    def overlap(self, since: datetime, until: datetime) -> float:
        start, end = max(self.start, since), min(self.end or until, until)
        return max(0.0, (end - start).total_seconds())

    def overlaps(self, since: datetime, until: datetime) -> bool:
        return self.start < until and (self.end is None or self.end > since)

    def to_dict(self, horizon: datetime) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "ongoing": self.end is None,
            "duration_seconds": round(self.seconds(horizon), 3),
            "components": [
                {"server": e.server, "component": e.component, "cause": e.cause}
                for e in self.episodes
            ],
            "positions": sorted({p for e in self.episodes for p in e.positions}),
        }


@dataclass(slots=True)
class _Track:
    first_seen: datetime
    last_heartbeat_at: datetime | None = None
    last_heartbeat_position: int | None = None
    present: bool = True
    open: Episode | None = None  # its outage going on
    absence: Episode | None = None  # removed by hand, not back yet


@dataclass(slots=True)
class Result:
    horizon: datetime
    position: int  # last event folded
    episodes: list[Episode]
    absences: list[Episode]  # removed by hand until the next heartbeat (cause "removed")
    failovers: list[Failover]
    cluster_outages: list[ClusterOutage]
    sync_periods: list[SyncPeriod]
    first_seen: dict[Key, datetime]
    present: set[Key]  # in the cluster at the horizon
    state: ClusterState
    overrides: dict[str, int]

    def episodes_in(self, since: datetime, until: datetime) -> list[Episode]:
        return [e for e in self.episodes if e.overlaps(since, until)]

    def absences_in(self, since: datetime, until: datetime) -> list[Episode]:
        return [a for a in self.absences if a.overlaps(since, until)]

    def failovers_in(self, since: datetime, until: datetime) -> list[Failover]:
        return [f for f in self.failovers if since <= f.episode.start < until]

    def cluster_outages_in(self, since: datetime, until: datetime) -> list[ClusterOutage]:
        return [o for o in self.cluster_outages if o.overlaps(since, until)]


class EpisodeBuilder:
    """Feed recorded events in position order, then `finish(horizon)`."""

    def __init__(self, overrides: Mapping[str, int] | None = None, *, track_sync: bool = False):
        self.simulate = overrides is not None
        self.overrides = dict(overrides or {})
        self.state = ClusterState()
        self.tracks: dict[Key, _Track] = {}
        self.episodes: list[Episode] = []
        self.absences: list[Episode] = []
        self.setting_positions: dict[str, int] = {}
        self._timeouts = self._effective_timeouts()
        self.track_sync = track_sync
        self.sync = SyncTracker() if track_sync else None
        self._settled: list[Key] = []  # what-if: components a deadline change timed out
        self._handlers: dict[type, Callable] = {
            HeartbeatRecorded: self._heartbeat,
            ComponentRemoved: self._removed,
            ConfigurationChanged: self._configuration,
            MonitorResumed: self._monitor_resumed,
        }
        if not self.simulate:
            self._handlers[ComponentTimedOut] = self._timed_out
            self._handlers[ComponentRecovered] = self._recovered

    # --- feeding ------------------------------------------------------------------------------

    def feed(self, recorded: RecordedEvent) -> None:
        event = recorded.event
        handler = self._handlers.get(type(event))
        dirty = handler(event, recorded) if handler is not None else False
        apply(self.state, recorded)
        if type(event) is ConfigurationChanged:
            self._timeouts = self._effective_timeouts()
        if self.sync is not None:
            if isinstance(event, COMPONENT_EVENTS):
                self._count_sync((event.server, event.component))
            if self._settled:
                for key in self._settled:
                    self._count_sync(key)
                self._settled.clear()
            if dirty:
                self._evaluate_sync(recorded)

    def feed_all(self, events: Iterable[RecordedEvent]) -> EpisodeBuilder:
        for recorded in events:
            self.feed(recorded)
        return self

    # --- rules --------------------------------------------------------------------------------

    def _effective_timeouts(self) -> dict[str, int]:
        config = self.state.configuration
        return {
            name: self.overrides.get(setting, getattr(config, setting))
            for name, setting in TIMEOUT_SETTING.items()
        }

    def _deadline(self, key: Key, track: _Track) -> datetime | None:
        """rules.deadline with the effective (possibly overridden) timeouts."""
        if track.last_heartbeat_at is None:
            return None
        base = track.last_heartbeat_at
        resumed = self.state.monitor_resumed_at
        if resumed is not None and resumed > base:
            base = resumed
        return base + timedelta(seconds=self._timeouts[key[1]])

    def _new_timeout(self, key: Key, track: _Track, start: datetime, **extra) -> Episode:
        config = self.state.configuration
        setting = TIMEOUT_SETTING[key[1]]
        positions = []
        if track.last_heartbeat_position is not None:
            positions.append(track.last_heartbeat_position)
        values: dict[str, Any] = {
            "detector": WHAT_IF_DETECTOR if self.simulate else None,
            "timeout_seconds": self._timeouts[key[1]],
            "configuration_version": config.version,
            "configuration_position": None
            if setting in self.overrides
            else self.setting_positions.get(setting),
            "last_heartbeat_at": track.last_heartbeat_at,
            "last_heartbeat_position": track.last_heartbeat_position,
            "positions": positions,
        }
        values.update(extra)
        episode = Episode(key[0], key[1], "timeout", start, **values)
        self.episodes.append(episode)
        return episode

    def _settle(self, before: datetime) -> bool:
        """What-if: open the episodes whose deadline passed before `before` (the rule is about to
        change, so the old deadlines must be judged now)."""
        changed = False
        for key, track in self.tracks.items():
            if track.present and track.open is None:
                expiry = self._deadline(key, track)
                if expiry is not None and expiry < before:
                    track.open = self._new_timeout(key, track, expiry)
                    changed = True
                    if self.sync is not None:
                        self._settled.append(key)
        return changed

    # --- handlers (called before the fold applies the event) ----------------------------------

    def _heartbeat(self, e: HeartbeatRecorded, r: RecordedEvent) -> bool:
        key = (e.server, e.component)
        track = self.tracks.get(key)
        now = r.recorded_at
        if track is None:
            self.tracks[key] = _Track(now, now, r.position)
            return True
        dirty = not track.present
        if track.absence is not None:
            track.absence.close(now, "returned", r.position)
            track.absence = None
        if track.open is not None:
            track.open.close(now, "recovered", r.position)
            track.open = None
            dirty = True
        elif self.simulate and track.present:
            expiry = self._deadline(key, track)
            if expiry is not None and now > expiry:
                self._new_timeout(key, track, expiry).close(now, "recovered", r.position)
                dirty = True
        track.present = True
        track.last_heartbeat_at = now
        track.last_heartbeat_position = r.position
        if not dirty and self.track_sync:
            component = self.state.component(e.server, e.component)
            dirty = component is None or (
                component.product_version != e.product_version
                or component.product != e.product
                or (
                    e.encryption_key_fingerprint is not None  # None keeps the known key
                    and component.encryption_key_fingerprint != e.encryption_key_fingerprint
                )
            )
        return dirty

    def _removed(self, e: ComponentRemoved, r: RecordedEvent) -> bool:
        key = (e.server, e.component)
        track = self.tracks.get(key)
        if track is None or not track.present:
            return False
        if track.open is None and self.simulate:
            expiry = self._deadline(key, track)
            if expiry is not None and expiry < r.recorded_at:
                track.open = self._new_timeout(key, track, expiry)
        if track.open is not None:
            track.open.removed_at = r.recorded_at
            track.open.close(r.recorded_at, "removed", r.position)
            track.open = None
        track.absence = Episode(
            e.server,
            e.component,
            "removed",
            r.recorded_at,
            configuration_version=self.state.configuration.version,
            last_heartbeat_at=track.last_heartbeat_at,
            last_heartbeat_position=track.last_heartbeat_position,
            positions=[r.position],
            removed_at=r.recorded_at,
        )
        self.absences.append(track.absence)
        track.present = False
        return True

    def _configuration(self, e: ConfigurationChanged, r: RecordedEvent) -> bool:
        for name in e.changes:
            self.setting_positions[name] = r.position
        return self.simulate and self._settle(r.recorded_at)

    def _monitor_resumed(self, e: MonitorResumed, r: RecordedEvent) -> bool:
        # Deadlines that passed before the monitor went down were caught then; the rest get one
        # full timeout from the resumption (the new base of rules.deadline).
        return self.simulate and self._settle(e.down_since)

    def _timed_out(self, e: ComponentTimedOut, r: RecordedEvent) -> bool:
        key = (e.server, e.component)
        track = self.tracks.get(key)
        if track is None or not track.present:  # the fold ignores it too
            return False
        if track.open is not None:
            track.open.positions.append(r.position)
            return False
        positions = [r.position]
        if e.last_heartbeat_position is not None:
            positions.insert(0, e.last_heartbeat_position)
        track.open = self._new_timeout(
            key,
            track,
            e.expired_at,
            detector=e.detector,
            timeout_seconds=e.timeout_seconds,
            configuration_version=e.configuration_version,
            last_heartbeat_position=e.last_heartbeat_position,
            positions=positions,
        )
        return True

    def _recovered(self, e: ComponentRecovered, r: RecordedEvent) -> bool:
        key = (e.server, e.component)
        track = self.tracks.get(key)
        if track is None or not track.present:  # the fold ignores it too
            return False
        if track.open is None:  # a recovery without its timeout in the log: keep what it says
            track.open = self._new_timeout(key, track, e.stale_since, detector=None)
        track.open.close(e.recovered_at, "recovered", r.position)
        track.open = None
        return True

    # --- sync periods -------------------------------------------------------------------------

    def start_sync(self) -> None:
        """Count the seeded state (episode_pass sets `state` and `tracks` from a snapshot) and
        open the periods already going on there, with no opening event."""
        for c in self.state.components():
            self._count_sync((c.server, c.name))
        self._evaluate_sync(None)

    def _count_sync(self, key: Key) -> None:
        assert self.sync is not None
        track = self.tracks.get(key)
        current = track is not None and track.present and track.open is None
        self.sync.update(key, self.state.component(*key), current)

    def _evaluate_sync(self, r: RecordedEvent | None) -> None:
        """Stamped with `r` (None: the seed state; periods already open have no opening
        event)."""
        assert self.sync is not None
        if r is None:
            self.sync.evaluate(self.state, self.state.recorded_at, None)
        else:
            self.sync.evaluate(self.state, r.recorded_at, r.position)

    # --- the end ------------------------------------------------------------------------------

    def finish(self, horizon: datetime) -> Result:
        """Close the pass at `horizon` (the end of the range: staleness is judged then)."""
        for key, track in self.tracks.items():
            if track.present and track.open is None:
                expiry = self._deadline(key, track)
                if expiry is not None and horizon > expiry:
                    track.open = self._new_timeout(key, track, expiry, inferred=not self.simulate)
        order = _by_start
        episodes = sorted(self.episodes, key=order)
        absences = sorted(self.absences, key=order)
        first_seen = {k: t.first_seen for k, t in self.tracks.items()}
        failovers, outages = cluster_episodes(episodes, first_seen, absences)
        return Result(
            horizon=horizon,
            position=self.state.position,
            episodes=episodes,
            absences=absences,
            failovers=failovers,
            cluster_outages=outages,
            sync_periods=list(self.sync.periods) if self.sync is not None else [],
            first_seen=first_seen,
            present={k for k, t in self.tracks.items() if t.present},
            state=self.state,
            overrides=self.overrides,
        )


def _by_start(e: Episode) -> tuple[datetime, str, str]:
    return (e.start, e.server, e.component)


def cluster_episodes(
    episodes: list[Episode], first_seen: Mapping[Key, datetime], absences: Iterable[Episode] = ()
) -> tuple[list[Failover], list[ClusterOutage]]:
    """Failovers and cluster outages from the Service components' episodes and absences (a
    component is not current during either).

    Every change at one instant is applied before judging it: a component coming back at the
    second another one expires took the work over (a failover, not a cluster outage).
    """
    changes: list[tuple[datetime, int, Key, Episode | None]] = []
    for key, seen in first_seen.items():
        if key[1] == "service":
            changes.append((seen, 0, key, None))
    service = [e for e in [*episodes, *absences] if e.component == "service"]
    for e in service:
        changes.append((e.start, 1, (e.server, e.component), e))
        if e.end is not None:
            changes.append((e.end, 0, (e.server, e.component), e))
    changes.sort(key=lambda c: (c[0], c[1], c[2]))

    current: set[Key] = set()
    down: dict[Key, Episode] = {}
    failovers: list[Failover] = []
    outages: list[ClusterOutage] = []
    outage: ClusterOutage | None = None
    i = 0
    while i < len(changes):
        at = changes[i][0]
        going: list[Episode] = []
        while i < len(changes) and changes[i][0] == at:
            _, going_down, key, episode = changes[i]
            i += 1
            if going_down:
                assert episode is not None  # every going-down change has its episode
                current.discard(key)
                down[key] = episode
                going.append(episode)
            else:
                current.add(key)
                down.pop(key, None)
        # Judged after every change of the instant: two components expiring together did not
        # fail over to each other.
        if current:
            failovers.extend(Failover(e, sorted(current)) for e in going if e.cause == "timeout")
            if outage is not None:
                outage.end = at
                outage = None
        elif down:
            if outage is None:
                outage = ClusterOutage(at, None, list(down.values()))
                outages.append(outage)
            else:
                outage.episodes.extend(e for e in going if all(o is not e for o in outage.episodes))
    for o in outages:
        o.episodes.sort(key=lambda e: (e.server, e.start))
    return failovers, outages
