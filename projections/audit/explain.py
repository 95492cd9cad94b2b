"""Why is (or was) a component stale? Its state at a time T and the chain of facts behind it.

Only the events that decide the answer are read: the cluster and monitor streams (configuration,
monitor gaps), the component's removals / timeouts / recoveries, and its last heartbeat at or
before T. Folding those with the shared fold gives exactly the component state the full fold
gives, because a heartbeat resets everything the earlier events of its stream set.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from domain import rules
from domain.durations import format_duration
from domain.events import (
    CLUSTER_STREAM,
    MONITOR_STREAM,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
    component_stream,
)
from domain.state import ClusterState, Configuration, fold
from eventstore.decoding import RecordedEvent
from eventstore.store import EventStore
from projections.audit.episodes import TIMEOUT_SETTING
from projections.readmodel import boundary

LIST_LIMIT = 20  # most recent removals / recoveries / timeouts listed
_EPSILON = timedelta(microseconds=1)  # the store's `until` is exclusive; T itself is included


class NeverSeen(LookupError):
    pass


def _ref(r: RecordedEvent) -> dict[str, Any]:
    return {"position": r.position, "recorded_at": r.recorded_at, "actor": r.metadata.get("actor")}


def explain(store: EventStore, server: str, component: str, at: datetime) -> dict[str, Any]:
    """The state of `server`/`component` at `at` and why. Raises NeverSeen when the log has
    nothing about the component at or before `at`."""
    stream = component_stream(server, component)
    until = at + _EPSILON
    seed = _seed(store, server, component, at)
    cluster_events = store.read_all(
        after=seed.position, streams=[CLUSTER_STREAM, MONITOR_STREAM], until=until, limit=None
    )
    own = store.read_all(
        after=seed.position,
        streams=[stream],
        types=["ComponentRemoved", "ComponentTimedOut", "ComponentRecovered"],
        until=until,
        limit=None,
    )
    last_beat = store.last_heartbeat(stream, at)
    if last_beat is None and seed.component(server, component) is not None:
        archived = cast(boundary.Archive, boundary.newest_archive(store))  # it seeded
        raise boundary.Archived(
            archived, f"the last heartbeat of {stream} by {boundary.moment(at)}"
        )
    if last_beat is None and not own:
        raise NeverSeen(f"the log has no event of the {component} component of {server} by {at}")
    chain = sorted([*cluster_events, *own, *([last_beat] if last_beat else [])], key=_position)
    state = fold(chain, seed)
    config = state.configuration
    setting = TIMEOUT_SETTING[component]
    timeout = rules.timeout_seconds(component, config)

    removals = [r for r in own if isinstance(r.event, ComponentRemoved)]
    timeouts = [r for r in own if isinstance(r.event, ComponentTimedOut)]
    recoveries = [r for r in own if isinstance(r.event, ComponentRecovered)]
    current = state.component(server, component)

    answer: dict[str, Any] = {
        "server": server,
        "component": component,
        "at": at,
        "as_of_position": max((r.position for r in chain), default=0),
        "last_heartbeat": _heartbeat(last_beat),
        "timeout": _timeout(setting, timeout, config, cluster_events),
        "monitor_gap": _monitor_gap(cluster_events, last_beat),
        "timed_out_by": None,
        "removals": [_removal(r) for r in removals[-LIST_LIMIT:]],
        "recoveries": [_recovery(r) for r in recoveries[-LIST_LIMIT:]],
        "timeouts": [_timed_out(r) for r in timeouts[-LIST_LIMIT:]],
        "counts": {
            "removals": len(removals),
            "recoveries": len(recoveries),
            "timeouts": len(timeouts),
        },
    }
    if current is None:
        last_removal = removals[-1]
        answer.update(
            state="removed",
            health=None,
            reasons=[],
            deadline=None,
            stale_since=None,
            explanation=(
                f"removed from the cluster by hand at {last_removal.recorded_at.isoformat()}"
                f" (position {last_removal.position}); it is absent until it sends a heartbeat"
            ),
        )
        return answer

    beat = rules.heartbeat(current, config, at, state.monitor_resumed_at)
    health, reasons = rules.component_health(current, config, beat)
    answer.update(
        state=beat.state,
        health=health,
        reasons=reasons,
        deadline=beat.deadline,
        stale_since=beat.stale_since,
    )
    recorded_timeout = None
    if current.timed_out_at is not None and timeouts:
        recorded_timeout = timeouts[-1]
        answer["timed_out_by"] = _timed_out(recorded_timeout)
    answer["explanation"] = _sentence(
        component, beat, timeout, last_beat, recorded_timeout, answer["monitor_gap"]
    )
    skew = rules.clock_skew_reason(current, config)
    if skew is not None:
        answer["explanation"] += "; " + _skew_sentence(skew, last_beat, config)
    return answer


def _seed(store: EventStore, server: str, component: str, at: datetime) -> ClusterState:
    """The state the chain folds on: empty, or past archived events the boundary's (its
    configuration, monitor gap and this component). Archived for a time before the boundary."""
    archived = boundary.newest_archive(store)
    if archived is not None and at < archived.before:
        raise boundary.Archived(archived, boundary.moment(at))
    return boundary.component_seed(store, server, component)


def _position(r: RecordedEvent) -> int:
    return r.position


def _heartbeat(r: RecordedEvent | None) -> dict[str, Any] | None:
    if r is None:
        return None
    e = cast(HeartbeatRecorded, r.event)
    return {
        "at": r.recorded_at,
        "position": r.position,
        "sent_at": e.sent_at,
        "status": e.status,
        "verification": e.verification,
        "product_version": e.product_version,
    }


def _timeout(
    setting: str, seconds: int, config: Configuration, cluster_events: list[RecordedEvent]
) -> dict[str, Any]:
    set_by = None
    for r in reversed(cluster_events):
        if isinstance(r.event, ConfigurationChanged) and setting in r.event.changes:
            set_by = {**_ref(r), "changes": r.event.changes}
            break
    return {
        "setting": setting,
        "seconds": seconds,
        "configuration_version": config.version,
        "set_by": set_by,  # None: the product default
    }


def _monitor_gap(
    cluster_events: list[RecordedEvent], last_beat: RecordedEvent | None
) -> dict[str, Any] | None:
    resumed = [r for r in cluster_events if isinstance(r.event, MonitorResumed)]
    if not resumed:
        return None
    r = resumed[-1]
    e = cast(MonitorResumed, r.event)
    if last_beat is not None and e.resumed_at <= last_beat.recorded_at:
        return None  # the gap is older than the last heartbeat: it does not move the deadline
    return {
        **_ref(r),
        "down_since": e.down_since,
        "resumed_at": e.resumed_at,
        "detector": e.detector,
    }


def _removal(r: RecordedEvent) -> dict[str, Any]:
    return {**_ref(r), "reason": cast(ComponentRemoved, r.event).reason}


def _recovery(r: RecordedEvent) -> dict[str, Any]:
    e = cast(ComponentRecovered, r.event)
    return {
        **_ref(r),
        "stale_since": e.stale_since,
        "recovered_at": e.recovered_at,
        "outage_seconds": e.outage_seconds,
    }


def _timed_out(r: RecordedEvent) -> dict[str, Any]:
    e = cast(ComponentTimedOut, r.event)
    return {
        **_ref(r),
        "expired_at": e.expired_at,
        "detected_at": e.detected_at,
        "detector": e.detector,
        "timeout_seconds": e.timeout_seconds,
        "configuration_version": e.configuration_version,
        "last_heartbeat_position": e.last_heartbeat_position,
    }


def _skew_sentence(skew: str, last_beat: RecordedEvent | None, config: Configuration) -> str:
    """`skew` ("its clock is 10 days behind ours") with the two clocks it compares."""
    limit = format_duration(rules.skew_limit_seconds(config))
    if last_beat is None:  # not expected: the skew comes from the last heartbeat
        return f"{skew} (more than {limit} apart)"
    sent = cast(HeartbeatRecorded, last_beat.event).sent_at
    return (
        f"{skew}: its last heartbeat says it was sent at {sent.isoformat()}, we recorded it at"
        f" {last_beat.recorded_at.isoformat()} (more than {limit} apart is a warning)"
    )


def _sentence(component, beat, timeout, last_beat, recorded, gap) -> str:
    if last_beat is None:
        return "no heartbeat received yet"
    last = f"last heartbeat at {last_beat.recorded_at.isoformat()} (position {last_beat.position})"
    base = "the monitor resumption" if gap else "that heartbeat"
    rule = f"timeout {format_duration(timeout)} counted from {base}"
    if beat.state == "current":
        return f"current: {last}; {rule}, so it stays current until {beat.deadline.isoformat()}"
    if recorded is not None:
        e = recorded.event
        return (
            f"stale since {e.expired_at.isoformat()}: {last}; timed out after"
            f" {format_duration(e.timeout_seconds)}"
            f" (configuration version {e.configuration_version}),"
            f" recorded by {e.detector} at position {recorded.position}"
        )
    return (
        f"stale since {beat.stale_since.isoformat()}: {last}; {rule}; no timeout recorded yet"
        " (the sweep records it within seconds)"
    )
