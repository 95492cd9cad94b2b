"""The event catalog: one small immutable type per event, and the record of a stored one.

Pure data: the store encodes these (eventstore/), the API validates what it takes in with its
own schemas (api/event_schemas.py), the fold and the rules read them (domain/state.py,
domain/rules.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

COMPONENTS = ("web", "service")
STATUSES = ("ok", "warning", "error")
VERIFICATIONS = ("verified", "unverified", "failed")

CLUSTER_STREAM = "cluster"
MONITOR_STREAM = "monitor"
# The actor (token name) of the heartbeats the /health poller records (collector/).
COLLECTOR_ACTOR = "collector"
# Why a poll failed (API.md v1.1, CollectionFailed.kind).
COLLECTION_FAILURES = ("refused", "timeout", "tls", "dns", "http_status", "not_health")


def component_stream(server: str, component: str) -> str:
    return f"{server}/{component}"


# What a notification channel may be sent on (API.md v1.1, "Notifications").
TRIGGERS = (
    "stale",
    "recovered",
    "version_drift",
    "key_mismatch",
    "cluster_outage",
    "monitor_resumed",
    "daily_report",
    "weekly_report",
)


def channel_stream(name: str) -> str:
    return f"channel:{name}"


def silence_stream(silence_id: str) -> str:
    return f"silence:{silence_id}"


def target_stream(server: str) -> str:
    """A polled server's stream: its target's configuration and its collection failures. The
    prefix keeps it apart from component streams, which are `server/component`."""
    return f"target:{server}"


class Event:
    """Base of every event type; subclasses are frozen dataclasses."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    _datetime_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def stream(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Event:
        if cls._datetime_fields:
            data = dict(data)
            for name in cls._datetime_fields:
                value = data.get(name)
                if isinstance(value, str):
                    data[name] = datetime.fromisoformat(value)
        return cls(**data)


class _ComponentEvent(Event):
    server: str
    component: str

    @property
    def stream(self) -> str:
        return component_stream(self.server, self.component)


@dataclass(frozen=True, slots=True)
class HeartbeatRecorded(_ComponentEvent):
    """A component said it is alive. `sent_at` is the sender's clock, kept to detect skew."""

    type: ClassVar[str] = "HeartbeatRecorded"
    schema_version: ClassVar[int] = 2
    _datetime_fields: ClassVar[tuple[str, ...]] = ("sent_at",)

    server: str
    component: str
    sent_at: datetime
    status: str = "ok"
    verification: str = "verified"
    os: str | None = None
    os_version: str | None = None
    ip: str | None = None
    product: str | None = None
    product_version: str | None = None
    encryption_key_fingerprint: str | None = None
    message: str | None = None


# What every time we take in must satisfy, because PostgreSQL stores it and psycopg reads it
# back: a UTC offset PostgreSQL accepts (whole minutes under 16 hours: "+16:00" fails the whole
# commit it is in), and a moment whose UTC value stays far from datetime's year 1 and 9999
# limits (psycopg cannot read a time before year 1 back, and a date next to either limit
# overflows at the first arithmetic). 1970-9000 keeps clocks with a dead battery (1970, 2000)
# and refuses nonsense.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=16)


def storable_time(value: datetime) -> bool:
    """Whether an aware datetime can be stored and read back (see above). The offset must be
    whole minutes too: JSON and PostgreSQL carry offsets as +hh:mm, and orjson rounds seconds
    away (+00:00:01 became +00:00, a second off; +00:59:59 became the invalid +00:60)."""
    offset = value.utcoffset()
    return (
        offset is not None
        and abs(offset) < MAX_UTC_OFFSET
        and not offset % timedelta(minutes=1)
        and EARLIEST <= value < LATEST
    )


@dataclass(frozen=True, slots=True)
class ConfigurationChanged(Event):
    """The changed settings only (a partial update); the fold merges them into the configuration."""

    type: ClassVar[str] = "ConfigurationChanged"

    changes: dict[str, Any]

    @property
    def stream(self) -> str:
        return CLUSTER_STREAM


@dataclass(frozen=True, slots=True)
class ComponentRemoved(_ComponentEvent):
    """An operator removed a component by hand; it is absent until it sends a heartbeat again."""

    type: ClassVar[str] = "ComponentRemoved"

    server: str
    component: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ComponentTimedOut(_ComponentEvent):
    """A component's deadline passed. `expired_at` is the logical expiry, not the detection."""

    type: ClassVar[str] = "ComponentTimedOut"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("expired_at", "detected_at")

    server: str
    component: str
    expired_at: datetime
    detected_at: datetime
    timeout_seconds: int
    configuration_version: int
    last_heartbeat_position: int | None
    detector: str


@dataclass(frozen=True, slots=True)
class ComponentRecovered(_ComponentEvent):
    """A heartbeat arrived from a component that had timed out."""

    type: ClassVar[str] = "ComponentRecovered"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("stale_since", "recovered_at")

    server: str
    component: str
    stale_since: datetime
    recovered_at: datetime
    outage_seconds: float


@dataclass(frozen=True, slots=True)
class MonitorResumed(Event):
    """The monitor was not watching between `down_since` and `resumed_at` (scheduler or service
    down). Components could not report meanwhile, so each gets one full timeout from
    `resumed_at` before it can expire, instead of a flood of timeouts at start-up."""

    type: ClassVar[str] = "MonitorResumed"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("down_since", "resumed_at")

    down_since: datetime
    resumed_at: datetime
    detector: str

    @property
    def stream(self) -> str:
        return MONITOR_STREAM


class _TargetEvent(Event):
    server: str

    @property
    def stream(self) -> str:
        return target_stream(self.server)


@dataclass(frozen=True, slots=True)
class TargetConfigured(_TargetEvent):
    """An admin created or changed a polled target: its `/health` is polled at `url`/health.
    The whole target, not a change: the last one is the target."""

    type: ClassVar[str] = "TargetConfigured"

    server: str
    url: str
    interval_seconds: int = 30
    timeout_seconds: int = 5
    verify_tls: bool = True


@dataclass(frozen=True, slots=True)
class TargetRemoved(_TargetEvent):
    """An admin stopped the polling of a server (the server stays in the cluster)."""

    type: ClassVar[str] = "TargetRemoved"

    server: str


@dataclass(frozen=True, slots=True)
class CollectionFailed(_TargetEvent):
    """Polling a target started failing, or fails in another way than before (never once per
    poll). The collector's next good poll ends it. `at` is when the poll started (our clock)."""

    type: ClassVar[str] = "CollectionFailed"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("at",)

    server: str
    kind: str  # one of COLLECTION_FAILURES
    detail: str
    at: datetime


TARGET_EVENTS = (TargetConfigured, TargetRemoved, CollectionFailed)


@dataclass(frozen=True, slots=True)
class ChannelConfigured(Event):
    """An admin created or changed a notification channel (the whole channel, not a change).
    Holds no secret: `target` is the URL with its secrets masked (what people see), and
    `url_encrypted` the full URL sealed with CLUSTERMON_SECRET_KEY (notify/secrets.py), which
    only the sender opens. `kind`: "webhook" (http/https: clustermon's own JSON webhook) or the
    Apprise scheme ("mailto", "slack", "msteams", "json", ...)."""

    type: ClassVar[str] = "ChannelConfigured"

    name: str
    kind: str
    target: str
    url_encrypted: str
    on: list[str]
    servers: list[str] | None = None  # None: every server
    min_outage_seconds: int = 0
    enabled: bool = True

    @property
    def stream(self) -> str:
        return channel_stream(self.name)


@dataclass(frozen=True, slots=True)
class ChannelRemoved(Event):
    type: ClassVar[str] = "ChannelRemoved"

    name: str

    @property
    def stream(self) -> str:
        return channel_stream(self.name)


@dataclass(frozen=True, slots=True)
class SilenceCreated(Event):
    """A maintenance window: deliveries it matches are suppressed (the outages are still
    recorded, shown and counted). `servers`/`components` None: every one."""

    type: ClassVar[str] = "SilenceCreated"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("starts_at", "ends_at")

    id: str
    starts_at: datetime
    ends_at: datetime
    servers: list[str] | None = None
    components: list[str] | None = None
    comment: str | None = None

    @property
    def stream(self) -> str:
        return silence_stream(self.id)


@dataclass(frozen=True, slots=True)
class SilenceEnded(Event):
    """An admin ended a silence before its end time."""

    type: ClassVar[str] = "SilenceEnded"
    _datetime_fields: ClassVar[tuple[str, ...]] = ("at",)

    id: str
    at: datetime

    @property
    def stream(self) -> str:
        return silence_stream(self.id)


CATALOG: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        HeartbeatRecorded,
        ConfigurationChanged,
        ComponentRemoved,
        ComponentTimedOut,
        ComponentRecovered,
        MonitorResumed,
        TargetConfigured,
        TargetRemoved,
        CollectionFailed,
        ChannelConfigured,
        ChannelRemoved,
        SilenceCreated,
        SilenceEnded,
    )
}


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the log holds it: its place in the global order and in its stream, and the
    two clocks (the sender's `occurred_at`, our `recorded_at`)."""

    position: int
    event_id: UUID
    stream: str
    version: int
    type: str
    schema_version: int  # as stored; `event` is always the current version
    event: Event
    metadata: Mapping[str, Any]
    occurred_at: datetime
    recorded_at: datetime
