"""A component's state transitions over time, each with its reason.

Folds the component's own stream together with the cluster-wide events that change how it is
judged (configuration, monitor gaps) through the same fold and rules as the view, and keeps the
events after which something a user sees changed: its heartbeat state, health, status,
verification, version, timeout, or its presence in the cluster. Heartbeats that change nothing
are left out.
"""

from __future__ import annotations

import heapq
from typing import Any

from domain import rules
from domain.durations import format_duration
from domain.events import (
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    component_stream,
)
from domain.state import ClusterState, apply
from eventstore.store import EventStore
from projections.readmodel import boundary

_CLUSTER_TYPES = ["ConfigurationChanged", "MonitorResumed"]


def _look(state: ClusterState, server: str, name: str, now) -> dict[str, Any] | None:
    component = state.component(server, name)
    if component is None:
        return None
    config = state.configuration
    beat = rules.heartbeat(component, config, now, state.monitor_resumed_at)
    health, reasons = rules.component_health(component, config, beat)
    return {
        "state": beat.state,
        "health": health,
        "reasons": reasons,
        "status": component.status,
        "verification": component.verification,
        "product_version": component.product_version,
        "timeout_seconds": rules.timeout_seconds(name, config),
        "clock_skew": rules.clock_skew_reason(component, config),
    }


def _changes(before: dict | None, after: dict) -> list[str]:
    if before is None:
        return []
    out = []
    for key, label in (
        ("status", "status"),
        ("verification", "verification"),
        ("product_version", "version"),
        ("timeout_seconds", "timeout (s)"),
    ):
        if before[key] != after[key]:
            out.append(f"{label} {before[key]} → {after[key]}")
    # Whether the clock is off, not by how much: each heartbeat words a slightly different skew.
    if (before["clock_skew"] is None) != (after["clock_skew"] is None):
        out.append(after["clock_skew"] or "its clock agrees with ours again")
    return out


def _reason(event, recorded, before, after, changes, ever_seen) -> str | None:
    if isinstance(event, ComponentRemoved):
        return "removed from the cluster by hand" + (f": {event.reason}" if event.reason else "")
    if isinstance(event, ComponentTimedOut):
        return (
            f"no heartbeat for {format_duration(event.timeout_seconds)} (timeout in force,"
            f" configuration version {event.configuration_version}); detected by"
            f" {event.detector}"
        )
    if isinstance(event, ComponentRecovered):
        return f"heartbeat again after {format_duration(event.outage_seconds)} without one"
    if isinstance(event, HeartbeatRecorded):
        if before is None:
            return (
                "heartbeat after removal: back in the cluster" if ever_seen else "first heartbeat"
            )
        parts = list(changes)
        if before["state"] == "stale":
            parts.insert(0, "heartbeat after it had gone stale")
        if event.message and after["health"] != "ok":
            parts.append(f"message: {event.message}")
        return "; ".join(parts) if parts else None
    if isinstance(event, ConfigurationChanged):
        parts = list(changes)
        if before["state"] != after["state"]:
            parts.append(f"now {after['state']} under the new timeout")
        return "configuration changed: " + "; ".join(parts) if parts else None
    # MonitorResumed: only worth a line when it changed the component's state.
    if before["state"] != after["state"]:
        return "the monitor resumed after a gap: one full timeout from the resumption"
    return None


def _merge_into_recovery(history, event, recorded, entry, before, after) -> bool:
    """Ingest appends ComponentRecovered just before the heartbeat that caused it (one
    append, one recorded_at): show them as one transition, with the state after the
    heartbeat, instead of a "recovered" entry that still looks stale."""
    if not (
        isinstance(event, HeartbeatRecorded)
        and after is not None
        and history
        and history[-1]["event"] == "ComponentRecovered"
        and history[-1]["at"] == recorded.recorded_at
    ):
        return False
    last = history[-1]
    last.update(entry)
    changes = _changes(before, after)
    if changes:
        last["reason"] += "; " + "; ".join(changes)
    return True


def component_history(store: EventStore, server: str, component: str) -> list[dict[str, Any]]:
    """Transitions of `server`/`component`, oldest first: each `at` (the logical expiry for a
    timeout, else the recording time), `position`, `event` (type), `state` (`current`,
    `stale` or `removed`), `health` (None once removed), `reasons` (the health reasons then),
    `reason` (why this entry), `status`, `verification`, `product_version`. Empty when the
    component never appeared."""
    own = store.read_stream(component_stream(server, component))
    state = boundary.component_seed(store, server, component)
    own = [r for r in own if r.position > state.position]  # (kept before a restored archive)
    if not own:
        archived = boundary.newest_archive(store)
        if archived is not None and state.component(server, component) is not None:
            # Known at the boundary, nothing of it since: all its history is in the archive.
            raise boundary.Archived(archived, f"the history of {component} on {server}")
        return []
    cluster = store.read_all(
        after=state.position, types=_CLUSTER_TYPES, limit=None, up_to=own[-1].position
    )
    history: list[dict[str, Any]] = []
    ever_seen = state.component(server, component) is not None
    for recorded in heapq.merge(own, cluster, key=lambda r: r.position):
        event = recorded.event
        at = event.expired_at if isinstance(event, ComponentTimedOut) else recorded.recorded_at
        before = _look(state, server, component, at)
        apply(state, recorded)
        after = _look(state, server, component, at)
        if before is None and after is None:
            continue  # cluster events before it appeared (or while it was removed)
        entry: dict[str, Any]
        if after is None:
            assert before is not None  # both None: skipped above
            entry = {"state": "removed", "health": None, "reasons": []}
            entry.update({k: before[k] for k in ("status", "verification", "product_version")})
        else:
            entry = {
                k: after[k]
                for k in ("state", "health", "reasons", "status", "verification", "product_version")
            }
        merged = _merge_into_recovery(history, event, recorded, entry, before, after)
        if merged:
            ever_seen = True
            continue
        reason = _reason(
            event,
            recorded,
            before,
            after or before,
            _changes(before, after) if after else [],
            ever_seen,
        )
        ever_seen = True
        if reason is None:
            continue
        history.append(
            {
                "at": at,
                "position": recorded.position,
                "event": recorded.type,
                "reason": reason,
                **entry,
            }
        )
    return history
