"""What a folded event means for notifications: the transitions people are told about.

Pure (no I/O, no clock): `TransitionDetector.feed(recorded)` folds one event into its state and
returns the transitions it caused, so the follower (notify/follower.py) and the tests see the
same thing, and a re-run over the same events finds the same transitions.

- `stale` / `recovered`: a ComponentTimedOut / ComponentRecovered, with the view's reasons.
- `version_drift` / `key_mismatch`: a server's software version or encryption key goes out of
  sync, or back into it. The verdicts are the view's (`domain.rules`), kept up to date by the
  audit's `SyncTracker`; they are judged again only when a heartbeat changed what a component
  reports or a component came or went (a timeout alone changes which components the references
  are drawn from, but judging then would announce drift in the middle of an outage).
- `cluster_outage`: the last current Service of the cluster timed out.
- `monitor_resumed`: the monitor was not watching for a while.

Flapping: a component that changes between stale and current `FLAP_COUNT` times within
`FLAP_WINDOW` gets one `stale` transition whose reasons say it is flapping; its further
changes are `quiet` ("flapping", written as suppressed deliveries) until it has been stable for
`FLAP_WINDOW`, judged at its next change (that change is announced normally).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from domain import rules
from domain.durations import format_duration
from domain.events import (
    EARLIEST,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    HeartbeatRecorded,
    MonitorResumed,
    RecordedEvent,
)
from domain.state import ClusterState, ComponentState, apply
from projections.audit.sync_periods import SyncTracker

FLAP_COUNT = 3
FLAP_WINDOW = timedelta(minutes=10)
SERVICE = "service"
CLUSTER_WIDE = ("cluster_outage", "monitor_resumed")  # about no server: every channel gets them
GROUPED = ("stale", "recovered")  # one sweep's (or one commit's) become one message


@dataclass(frozen=True, slots=True)
class Transition:
    trigger: str
    at: datetime  # when it happened (a timeout: the logical expiry)
    reasons: list[str]
    position: int  # of the event that caused it
    event_id: UUID
    server: str | None = None  # None: the whole cluster
    component: str | None = None
    # Transitions with equal keys at consecutive positions are one message (see GROUPED).
    group: tuple | None = None
    quiet: str | None = None  # why it is written suppressed by every channel ("flapping")
    flapping: bool = False  # the one message saying the component flaps (no grace delays it)
    outage_seconds: float | None = None  # a recovery: how long it was stale (the grace test)
    stale_position: int | None = None  # a recovery: the timeout it ends, if known


@dataclass(slots=True)
class _Flaps:
    changes: deque[datetime] = field(default_factory=deque)
    flapping: bool = False


def _current(component: ComponentState) -> bool:
    """Current as the log says it: it has beaten and no recorded timeout stands. (The view
    also expires components by the clock; the follower hears of that from the sweep's
    ComponentTimedOut.)"""
    return component.last_heartbeat_at is not None and component.timed_out_at is None


def _reported(component: ComponentState | None) -> tuple:
    if component is None:
        return (None,)
    return (component.product, component.product_version, component.encryption_key_fingerprint)


class TransitionDetector:
    """Folds events into `state` (in place, as `domain.state.apply` does) and finds transitions.

    Start it from a state (a snapshot's) and `feed` it every later event in order."""

    def __init__(self, state: ClusterState | None = None):
        self.state = state if state is not None else ClusterState()
        self._sync = SyncTracker()
        for c in self.state.components():
            self._sync.update((c.server, c.name), c, _current(c))
        # Out of sync already: no transition (the time only stamps the tracker's periods).
        self._sync.evaluate(self.state, self.state.recorded_at or EARLIEST, None)
        self._current_services = sum(
            1 for c in self.state.components() if c.name == SERVICE and _current(c)
        )
        self._flaps: dict[tuple[str, str], _Flaps] = {}
        self._stale_positions: dict[tuple[str, str], int] = {}

    def feed(self, recorded: RecordedEvent) -> list[Transition]:
        event = recorded.event
        server = getattr(event, "server", None)
        name = getattr(event, "component", None)
        before = self.state.component(server, name) if server and name else None
        was_current = before is not None and _current(before)
        reported = _reported(before)
        apply(self.state, recorded)
        if not isinstance(
            event, (HeartbeatRecorded, ComponentRemoved, ComponentTimedOut, ComponentRecovered)
        ):
            if isinstance(event, MonitorResumed):
                return [self._monitor_resumed(event, recorded)]
            return []
        assert server is not None and name is not None
        after = self.state.component(server, name)
        is_current = after is not None and _current(after)
        found: list[Transition] = []
        if isinstance(event, ComponentTimedOut):
            self._stale_positions[(server, name)] = recorded.position
            found.append(self._flap(self._stale(event, recorded)))
        elif isinstance(event, ComponentRecovered):
            found.append(self._flap(self._recovered(event, recorded)))
        if name == SERVICE and was_current != is_current:
            self._current_services += 1 if is_current else -1
            if self._current_services == 0 and isinstance(event, ComponentTimedOut):
                found.append(self._outage(event, recorded))
        self._sync.update((server, name), after, is_current)
        if isinstance(event, (HeartbeatRecorded, ComponentRemoved)) and (
            reported != _reported(after)
        ):
            found.extend(self._sync_changes(recorded))
        return found

    # --- component transitions -------------------------------------------------------------

    def _stale(self, e: ComponentTimedOut, r: RecordedEvent) -> Transition:
        state = self.state
        component = state.component(e.server, e.component)
        reasons = [f"no heartbeat since {e.expired_at:%Y-%m-%d %H:%M:%S} UTC"]
        if component is not None:
            beat = rules.heartbeat(
                component, state.configuration, e.detected_at, state.monitor_resumed_at
            )
            target = state.targets.get(e.server)
            _, reasons = rules.component_health(
                component, state.configuration, beat, target.failure if target else None
            )
        return Transition(
            "stale",
            _utc(e.expired_at),
            reasons,
            r.position,
            r.event_id,
            e.server,
            e.component,
            group=("stale", e.detected_at),
        )

    def _recovered(self, e: ComponentRecovered, r: RecordedEvent) -> Transition:
        reasons = [
            f"heartbeat received again after {format_duration(e.outage_seconds)} stale"
            f" (stale since {_utc(e.stale_since):%Y-%m-%d %H:%M:%S} UTC)"
        ]
        return Transition(
            "recovered",
            _utc(e.recovered_at),
            reasons,
            r.position,
            r.event_id,
            e.server,
            e.component,
            group=("recovered", r.recorded_at),
            outage_seconds=e.outage_seconds,
            stale_position=self._stale_positions.pop((e.server, e.component), None),
        )

    def _flap(self, transition: Transition) -> Transition:
        """Count the change; the one that makes the component flapping says so, the ones
        after it are quiet until it has been stable for FLAP_WINDOW."""
        key = (transition.server or "", transition.component or "")
        flaps = self._flaps.setdefault(key, _Flaps())
        at = transition.at
        if flaps.changes and at - flaps.changes[-1] > FLAP_WINDOW:
            flaps.changes.clear()
            flaps.flapping = False  # stable long enough: this change is news again
        flaps.changes.append(at)
        while at - flaps.changes[0] > FLAP_WINDOW:
            flaps.changes.popleft()
        if flaps.flapping:
            return _replace(transition, quiet="flapping")
        if len(flaps.changes) >= FLAP_COUNT:
            flaps.flapping = True
            minutes = int(FLAP_WINDOW.total_seconds() // 60)
            now = "stale" if transition.trigger == "stale" else "current"
            return _replace(
                transition,
                trigger="stale",
                group=None,
                flapping=True,
                reasons=[
                    f"flapping: changed between stale and current {len(flaps.changes)} times"
                    f" in {minutes} minutes (now {now}); no further messages about it until"
                    f" it is stable for {minutes} minutes",
                    *transition.reasons,
                ],
                outage_seconds=None,
            )
        return transition

    # --- cluster-wide ----------------------------------------------------------------------

    def _outage(self, e: ComponentTimedOut, r: RecordedEvent) -> Transition:
        return Transition(
            "cluster_outage",
            _utc(e.expired_at),
            [
                "no current Service in the cluster: the last one"
                f" ({e.server}) stopped sending heartbeats at"
                f" {_utc(e.expired_at):%Y-%m-%d %H:%M:%S} UTC"
            ],
            r.position,
            r.event_id,
        )

    def _monitor_resumed(self, e: MonitorResumed, r: RecordedEvent) -> Transition:
        gap = (e.resumed_at - e.down_since).total_seconds()
        return Transition(
            "monitor_resumed",
            _utc(e.resumed_at),
            [
                f"the monitor was not watching from {_utc(e.down_since):%Y-%m-%d %H:%M:%S} UTC"
                f" for {format_duration(gap)}; every component gets one full timeout from"
                f" {_utc(e.resumed_at):%H:%M:%S} UTC"
            ],
            r.position,
            r.event_id,
        )

    def _sync_changes(self, r: RecordedEvent) -> list[Transition]:
        tracker = self._sync
        before = set(tracker.open)
        tracker.evaluate(self.state, r.recorded_at, r.position)
        after = set(tracker.open)
        found = []
        for server, kind in sorted(before ^ after):
            out = (server, kind) in after
            if not out and server not in self.state.servers:
                continue  # removed, not mended: nothing to tell
            trigger = "version_drift" if kind == "version" else "key_mismatch"
            found.append(
                Transition(
                    trigger,
                    _utc(r.recorded_at),
                    [self._sync_reason(server, kind, out)],
                    r.position,
                    r.event_id,
                    server,
                )
            )
        return found

    def _sync_reason(self, server: str, kind: str, out: bool) -> str:
        if kind == "version":
            if out:
                return "software version differs from the rest of the cluster"
            return "software version back in sync with the rest of the cluster"
        if not out:
            return "encryption key back in sync with the rest of the cluster"
        refs = self._sync._refs  # the references the verdict was reached with
        why = rules.key_mismatch(self.state.servers[server], refs)
        return f"{why}: decryption fails and users are asked to log in again"


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _replace(transition: Transition, **changes) -> Transition:
    return replace(transition, **changes)
