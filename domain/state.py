"""The cluster state and the one fold that builds it from the log.

`apply(state, recorded)` is deterministic and does no I/O: the live runner, a rebuild from zero,
the scheduler and time travel all use it. For speed it evolves `state` in place and returns it
(copying a 1,000-server state per event would cost more than the event); take `state.copy()`
to keep a snapshot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from domain.events import (
    COLLECTOR_ACTOR,
    ChannelConfigured,
    ChannelRemoved,
    CollectionFailed,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    Event,
    HeartbeatRecorded,
    MonitorResumed,
    RecordedEvent,
    SilenceCreated,
    SilenceEnded,
    TargetConfigured,
    TargetRemoved,
)


@dataclass(slots=True)
class Configuration:
    load_balancing: bool = True
    automatic_failover: bool = True
    heartbeat_frequency_seconds: int = 30
    stale_timeout_seconds: int = 300
    web_stale_timeout_seconds: int = 86_400
    version: int = 0  # how many ConfigurationChanged events shaped it
    changed_position: int | None = None

    SETTINGS = (
        "load_balancing",
        "automatic_failover",
        "heartbeat_frequency_seconds",
        "stale_timeout_seconds",
        "web_stale_timeout_seconds",
    )

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SETTINGS}


@dataclass(slots=True)
class ComponentState:
    server: str
    name: str  # "web" or "service"
    status: str = "ok"
    verification: str = "verified"
    product: str | None = None
    product_version: str | None = None
    encryption_key_fingerprint: str | None = None
    message: str | None = None
    last_heartbeat_at: datetime | None = None  # our clock (recorded_at)
    last_heartbeat_position: int | None = None
    last_sent_at: datetime | None = None  # the sender's clock, for skew
    timed_out_at: datetime | None = None  # logical expiry of the recorded timeout, if stale
    stream_version: int = 0  # version of the last event of the component's stream


@dataclass(slots=True)
class ServerState:
    name: str
    os: str | None = None
    os_version: str | None = None
    ip: str | None = None
    components: dict[str, ComponentState] = field(default_factory=dict)


@dataclass(slots=True)
class CollectionFailure:
    kind: str  # one of domain.events.COLLECTION_FAILURES
    detail: str
    at: datetime  # when the first failing poll of this kind started (our clock)


@dataclass(slots=True)
class TargetState:
    """A server whose `/health` the collector polls, and how its polling goes."""

    server: str
    url: str
    interval_seconds: int = 30
    timeout_seconds: int = 5
    verify_tls: bool = True
    version: int = 0  # of its stream (target_stream)
    failure: CollectionFailure | None = None  # until the collector's next good poll

    SETTINGS = ("url", "interval_seconds", "timeout_seconds", "verify_tls")

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.SETTINGS}

    def to_dict(self) -> dict[str, Any]:
        return {**_fields(self), "failure": self.failure and _fields(self.failure)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetState:
        data = dict(data)
        failure = data.pop("failure", None)
        if failure is not None:
            failure = CollectionFailure(**{**failure, "at": _utc(_dt(failure["at"]))})
        return cls(**data, failure=failure)


@dataclass(slots=True)
class ChannelState:
    """A notification channel as configured (no secret in clear: see ChannelConfigured)."""

    name: str
    kind: str
    target: str
    url_encrypted: str
    on: list[str]
    servers: list[str] | None = None
    min_outage_seconds: int = 0
    enabled: bool = True
    version: int = 0  # of its stream
    configured_position: int = 0  # the event that configured it last

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelState:
        return cls(**data)


@dataclass(slots=True)
class SilenceState:
    id: str
    starts_at: datetime
    ends_at: datetime  # the end it was created with, or when it was ended early
    servers: list[str] | None = None
    components: list[str] | None = None
    comment: str | None = None
    ended_early: bool = False

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, server: str | None, component: str | None) -> bool:
        """Whether it covers a message about `server`'s `component` (None: cluster-wide, which
        only a silence of every server covers)."""
        if self.servers is not None and (server is None or server not in self.servers):
            return False
        return self.components is None or component is None or component in self.components

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SilenceState:
        data = {**data, "starts_at": _dt(data["starts_at"]), "ends_at": _dt(data["ends_at"])}
        return cls(**data)


@dataclass(slots=True)
class ClusterState:
    configuration: Configuration = field(default_factory=Configuration)
    servers: dict[str, ServerState] = field(default_factory=dict)
    position: int = 0  # last event folded in
    recorded_at: datetime | None = None  # when that event was recorded
    monitor_resumed_at: datetime | None = None
    targets: dict[str, TargetState] = field(default_factory=dict)
    channels: dict[str, ChannelState] = field(default_factory=dict)
    silences: dict[str, SilenceState] = field(default_factory=dict)

    def copy(self) -> ClusterState:
        return copy.deepcopy(self)

    def components(self):
        for server in self.servers.values():
            yield from server.components.values()

    def component(self, server: str, name: str) -> ComponentState | None:
        entry = self.servers.get(server)
        return entry.components.get(name) if entry else None

    # --- (de)serialisation for snapshots -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "configuration": _fields(self.configuration),
            "servers": [
                {
                    **{k: v for k, v in _fields(s).items() if k != "components"},
                    "components": [_fields(c) for c in s.components.values()],
                }
                for s in self.servers.values()
            ],
            "position": self.position,
            "recorded_at": self.recorded_at,
            "monitor_resumed_at": self.monitor_resumed_at,
            "targets": [t.to_dict() for t in self.targets.values()],
            "channels": [c.to_dict() for c in self.channels.values()],
            "silences": [x.to_dict() for x in self.silences.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        state = cls(
            configuration=Configuration(**data["configuration"]),
            position=data["position"],
            recorded_at=_dt(data["recorded_at"]),
            monitor_resumed_at=_dt(data["monitor_resumed_at"]),
        )
        for s in data["servers"]:
            server = ServerState(s["name"], s["os"], s["os_version"], s["ip"])
            for c in s["components"]:
                for key in ("last_heartbeat_at", "last_sent_at", "timed_out_at"):
                    c[key] = _dt(c[key])
                server.components[c["name"]] = ComponentState(**c)
            state.servers[server.name] = server
        for t in data.get("targets", ()):  # snapshots taken before targets existed have none
            target = TargetState.from_dict(t)
            state.targets[target.server] = target
        state.set_notification_config(data.get("channels", ()), data.get("silences", ()))
        return state

    def set_notification_config(self, channels, silences) -> None:
        """Channels and silences from their dict forms (snapshots, the read tables)."""
        for c in channels:
            channel = ChannelState.from_dict(c)
            self.channels[channel.name] = channel
        for x in silences:
            silence = SilenceState.from_dict(x)
            self.silences[silence.id] = silence


def _fields(obj) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _utc(value: datetime) -> datetime:
    """The same instant with the `UTC` singleton as its zone. psycopg returns the session's
    ZoneInfo; arithmetic between that and `UTC` datetimes is ~7x slower than between two
    `UTC` ones, which the view does several times per component on every read."""
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _dt(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# --- the fold ---------------------------------------------------------------------------------


def apply(state: ClusterState, recorded: RecordedEvent) -> ClusterState:
    handler = _HANDLERS.get(type(recorded.event))
    if handler is not None:
        handler(state, recorded.event, recorded)
    state.position = recorded.position
    state.recorded_at = recorded.recorded_at
    return state


def fold(events, state: ClusterState | None = None) -> ClusterState:
    state = state if state is not None else ClusterState()
    for recorded in events:
        apply(state, recorded)
    return state


def _heartbeat(state: ClusterState, e: HeartbeatRecorded, r: RecordedEvent) -> None:
    server = state.servers.get(e.server)
    if server is None:
        server = state.servers[e.server] = ServerState(e.server)
    # A heartbeat describes its server; an agent that omits a field keeps the known value.
    if e.os is not None:
        server.os = e.os
    if e.os_version is not None:
        server.os_version = e.os_version
    if e.ip is not None:
        server.ip = e.ip
    component = server.components.get(e.component)
    if component is None:
        component = server.components[e.component] = ComponentState(e.server, e.component)
    component.status = e.status
    component.verification = e.verification
    component.product = e.product
    component.product_version = e.product_version
    # Only an agent on the machine can read the key: the /health poller's heartbeats of the
    # same server carry none, and must not erase the agent's fingerprint (issue #18).
    if e.encryption_key_fingerprint is not None:
        component.encryption_key_fingerprint = e.encryption_key_fingerprint
    component.message = e.message
    component.last_heartbeat_at = _utc(r.recorded_at)
    component.last_heartbeat_position = r.position
    component.last_sent_at = e.sent_at
    component.timed_out_at = None
    component.stream_version = r.version
    target = state.targets.get(e.server)
    # Only the poller's own heartbeats say that polling works again.
    if target is not None and target.failure and r.metadata.get("actor") == COLLECTOR_ACTOR:
        target.failure = None


def _configuration(state: ClusterState, e: ConfigurationChanged, r: RecordedEvent) -> None:
    config = state.configuration
    for name, value in e.changes.items():
        if name in Configuration.SETTINGS:
            setattr(config, name, value)
    config.version += 1
    config.changed_position = r.position


def _removed(state: ClusterState, e: ComponentRemoved, r: RecordedEvent) -> None:
    server = state.servers.get(e.server)
    if server is None:
        return
    server.components.pop(e.component, None)
    if not server.components:
        del state.servers[e.server]


def _timed_out(state: ClusterState, e: ComponentTimedOut, r: RecordedEvent) -> None:
    component = state.component(e.server, e.component)
    if component is not None:
        component.timed_out_at = e.expired_at
        component.stream_version = r.version


def _recovered(state: ClusterState, e: ComponentRecovered, r: RecordedEvent) -> None:
    component = state.component(e.server, e.component)
    if component is not None:
        component.timed_out_at = None
        component.stream_version = r.version


def _monitor_resumed(state: ClusterState, e: MonitorResumed, r: RecordedEvent) -> None:
    state.monitor_resumed_at = e.resumed_at


def _target_configured(state: ClusterState, e: TargetConfigured, r: RecordedEvent) -> None:
    target = state.targets.get(e.server)
    if target is None:
        target = state.targets[e.server] = TargetState(e.server, e.url)
    for name in TargetState.SETTINGS:
        setattr(target, name, getattr(e, name))
    target.version = r.version


def _target_removed(state: ClusterState, e: TargetRemoved, r: RecordedEvent) -> None:
    state.targets.pop(e.server, None)


def _collection_failed(state: ClusterState, e: CollectionFailed, r: RecordedEvent) -> None:
    target = state.targets.get(e.server)
    if target is not None:
        target.failure = CollectionFailure(e.kind, e.detail, _utc(e.at))
        target.version = r.version


def _channel_configured(state: ClusterState, e: ChannelConfigured, r: RecordedEvent) -> None:
    state.channels[e.name] = ChannelState(
        e.name,
        e.kind,
        e.target,
        e.url_encrypted,
        list(e.on),
        list(e.servers) if e.servers is not None else None,
        e.min_outage_seconds,
        e.enabled,
        r.version,
        r.position,
    )


def _channel_removed(state: ClusterState, e: ChannelRemoved, r: RecordedEvent) -> None:
    state.channels.pop(e.name, None)


def _silence_created(state: ClusterState, e: SilenceCreated, r: RecordedEvent) -> None:
    state.silences[e.id] = SilenceState(
        e.id,
        _utc(e.starts_at),
        _utc(e.ends_at),
        list(e.servers) if e.servers is not None else None,
        list(e.components) if e.components is not None else None,
        e.comment,
    )


def _silence_ended(state: ClusterState, e: SilenceEnded, r: RecordedEvent) -> None:
    silence = state.silences.get(e.id)
    if silence is not None and e.at < silence.ends_at:
        # A new object, not a change in place: copy-on-write readers share the old one.
        state.silences[e.id] = replace(silence, ends_at=_utc(e.at), ended_early=True)


_HANDLERS: dict[type[Event], Callable[[ClusterState, Any, RecordedEvent], None]] = {
    HeartbeatRecorded: _heartbeat,
    ConfigurationChanged: _configuration,
    ComponentRemoved: _removed,
    ComponentTimedOut: _timed_out,
    ComponentRecovered: _recovered,
    MonitorResumed: _monitor_resumed,
    TargetConfigured: _target_configured,
    TargetRemoved: _target_removed,
    CollectionFailed: _collection_failed,
    ChannelConfigured: _channel_configured,
    ChannelRemoved: _channel_removed,
    SilenceCreated: _silence_created,
    SilenceEnded: _silence_ended,
}
