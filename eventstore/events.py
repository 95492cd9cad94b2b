"""The event catalog: one small immutable type per event, its payload schema and its version.

Writing goes through the frozen dataclasses; the marshmallow schema of each type describes
(and validates) its payload for the API and for the tests. Reading decodes the stored JSON
straight into the dataclass without marshmallow, because replay speed matters; payloads of an
older schema version are first passed through the upcasters registered for that type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from marshmallow import Schema, fields, validate

COMPONENTS = ("web", "service")
STATUSES = ("ok", "warning", "error")
VERIFICATIONS = ("verified", "unverified", "failed")

CLUSTER_STREAM = "cluster"
MONITOR_STREAM = "monitor"


def component_stream(server: str, component: str) -> str:
    return f"{server}/{component}"


class Event:
    """Base of every event type; subclasses are frozen dataclasses."""

    type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    schema: ClassVar[type[Schema]]
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


def _component_fields() -> dict[str, fields.Field]:
    return {
        "server": fields.String(required=True, validate=validate.Length(1, 200)),
        "component": fields.String(required=True, validate=validate.OneOf(COMPONENTS)),
    }


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


class Fingerprint(fields.String):
    """A SHA-256 fingerprint: 64 hex characters in either case, loaded in lowercase so that
    equal keys compare equal (.NET's Convert.ToHexString, for one, prints uppercase)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()


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


class Instant(fields.AwareDateTime):
    """An ISO-8601 time with a UTC offset that clustermon can store (`storable_time`)."""

    default_error_messages = {
        "unstorable": "must be between 1970-01-01 and 9000-01-01 (UTC), with a UTC offset"
        " of whole minutes under 16 hours",
    }

    RANGE = "between 1970-01-01 and 9000-01-01 (UTC), UTC offset in whole minutes under 16 h"

    def __init__(self, **kwargs):
        # The range in the OpenAPI document too: JSON Schema's date-time format cannot say it.
        metadata = dict(kwargs.pop("metadata", None) or {})
        described = metadata.get("description")
        metadata["description"] = f"{described}; {self.RANGE}" if described else self.RANGE
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        loaded = super()._deserialize(value, attr, data, **kwargs)
        if not storable_time(loaded):
            raise self.make_error("unstorable")
        return loaded


class HostAddress(fields.IP):
    """An IPv4 or IPv6 address without an IPv6 zone (`fe80::1%eth0`): a zone names one of the
    sender's own interfaces, which means nothing to anyone else (and no JSON Schema address
    format allows it)."""

    default_error_messages = {"zone": "must be an address without a zone (%interface)"}

    def _deserialize(self, value, attr, data, **kwargs):
        address = super()._deserialize(value, attr, data, **kwargs)
        if getattr(address, "scope_id", None) is not None:
            raise self.make_error("zone")
        return address


# Text that PostgreSQL can store: its text type refuses NUL characters (the whole commit fails).
NO_NUL = validate.Regexp(r"^[^\x00]*$", error="must not contain NUL characters")


def _optional_text(max_length: int) -> fields.String:
    return fields.String(
        load_default=None, allow_none=True, validate=[validate.Length(max=max_length), NO_NUL]
    )


class HeartbeatRecordedSchema(Schema):
    server = fields.String(required=True, validate=validate.Length(1, 200))
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    sent_at = Instant(required=True)
    status = fields.String(load_default="ok", validate=validate.OneOf(STATUSES))
    verification = fields.String(load_default="verified", validate=validate.OneOf(VERIFICATIONS))
    os = _optional_text(100)
    os_version = _optional_text(100)
    ip = HostAddress(load_default=None, allow_none=True)
    product = _optional_text(100)
    product_version = _optional_text(50)
    encryption_key_fingerprint = Fingerprint(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(  # A-F: what clients may send, as the OpenAPI document says
            r"^[0-9a-fA-F]{64}(?!\n)$",  # (?!\n): `$` alone also matches before a final newline
            error="must be 64 hex characters (the SHA-256 of the key, never the key)",
        ),
    )
    message = _optional_text(500)


HeartbeatRecorded.schema = HeartbeatRecordedSchema


@dataclass(frozen=True, slots=True)
class ConfigurationChanged(Event):
    """The changed settings only (a partial update); the fold merges them into the configuration."""

    type: ClassVar[str] = "ConfigurationChanged"

    changes: dict[str, Any]

    @property
    def stream(self) -> str:
        return CLUSTER_STREAM


class JsonBoolean(fields.Boolean):
    """JSON true or false only (marshmallow also takes 0, 1, "yes", "off", ...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value.__class__ is not bool:
            raise self.make_error("invalid")
        return value


class JsonInteger(fields.Integer):
    """A JSON integer only (marshmallow also takes "30", 30.0 and true)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value.__class__ is not int:
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _seconds(low: int, high: int) -> JsonInteger:
    return JsonInteger(validate=validate.Range(low, high))


class ConfigurationSchema(Schema):
    load_balancing = JsonBoolean()
    automatic_failover = JsonBoolean()
    heartbeat_frequency_seconds = _seconds(1, 3600)
    stale_timeout_seconds = _seconds(1, 7 * 86400)
    web_stale_timeout_seconds = _seconds(60, 30 * 86400)


class ConfigurationChangedSchema(Schema):
    changes = fields.Nested(ConfigurationSchema, required=True)


ConfigurationChanged.schema = ConfigurationChangedSchema


@dataclass(frozen=True, slots=True)
class ComponentRemoved(_ComponentEvent):
    """An operator removed a component by hand; it is absent until it sends a heartbeat again."""

    type: ClassVar[str] = "ComponentRemoved"

    server: str
    component: str
    reason: str | None = None


class ComponentRemovedSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    reason = fields.String(load_default=None, allow_none=True)


ComponentRemoved.schema = ComponentRemovedSchema


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


class ComponentTimedOutSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    expired_at = fields.AwareDateTime(required=True)
    detected_at = fields.AwareDateTime(required=True)
    timeout_seconds = fields.Integer(required=True, validate=validate.Range(min=1))
    configuration_version = fields.Integer(required=True, validate=validate.Range(min=0))
    last_heartbeat_position = fields.Integer(required=True, allow_none=True)
    detector = fields.String(required=True)


ComponentTimedOut.schema = ComponentTimedOutSchema


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


class ComponentRecoveredSchema(Schema):
    server = fields.String(required=True)
    component = fields.String(required=True, validate=validate.OneOf(COMPONENTS))
    stale_since = fields.AwareDateTime(required=True)
    recovered_at = fields.AwareDateTime(required=True)
    outage_seconds = fields.Float(required=True, validate=validate.Range(min=0))


ComponentRecovered.schema = ComponentRecoveredSchema


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


class MonitorResumedSchema(Schema):
    down_since = fields.AwareDateTime(required=True)
    resumed_at = fields.AwareDateTime(required=True)
    detector = fields.String(required=True)


MonitorResumed.schema = MonitorResumedSchema


CATALOG: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        HeartbeatRecorded,
        ConfigurationChanged,
        ComponentRemoved,
        ComponentTimedOut,
        ComponentRecovered,
        MonitorResumed,
    )
}

# --- upcasting --------------------------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# (type, from_version) -> function returning the payload of version from_version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("HeartbeatRecorded", 1)
def _heartbeat_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 agents named components as the product UI does ("Web", "Service") and sent
    `key_fingerprint`; v2 uses lowercase component names and `encryption_key_fingerprint`."""
    data = dict(data)
    data["component"] = data["component"].lower()
    data["encryption_key_fingerprint"] = data.pop("key_fingerprint", None)
    return data


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = CATALOG[event_type].schema_version
    while schema_version < current:
        data = UPCASTERS[(event_type, schema_version)](data)
        schema_version += 1
    return data


def decode(event_type: str, schema_version: int, data: dict[str, Any]) -> Event:
    cls = CATALOG[event_type]
    if schema_version != cls.schema_version:
        data = upcast(event_type, schema_version, data)
    return cls.from_data(data)
