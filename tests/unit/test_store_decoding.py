"""The store's fast row decoding builds exactly what the catalog's own decoding builds."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from domain.events import (
    CATALOG,
    ChannelConfigured,
    ChannelRemoved,
    CollectionFailed,
    ComponentRecovered,
    ComponentRemoved,
    ComponentTimedOut,
    ConfigurationChanged,
    HeartbeatRecorded,
    MonitorResumed,
    SilenceCreated,
    SilenceEnded,
    TargetConfigured,
    TargetRemoved,
)
from eventstore.decoding import RecordedEvent, recorded
from eventstore.upcasting import decode

T = datetime(2026, 11, 27, 10, 0, 0, 123000, tzinfo=UTC)

SAMPLES = [
    HeartbeatRecorded(
        server="web01",
        component="web",
        sent_at=T,
        status="warning",
        verification="unverified",
        os="Windows Server",
        os_version="2022",
        ip="10.0.0.5",
        product="ProGet",
        product_version="2025.10",
        encryption_key_fingerprint="ab" * 32,
        message="disk almost full",
    ),
    HeartbeatRecorded(server="web01", component="service", sent_at=T),
    ConfigurationChanged(changes={"stale_timeout_seconds": 120, "load_balancing": True}),
    ComponentRemoved(server="web02", component="web", reason=None),
    ComponentTimedOut(
        server="web02",
        component="service",
        expired_at=T,
        detected_at=T,
        timeout_seconds=300,
        configuration_version=3,
        last_heartbeat_position=None,
        detector="scheduler-a",
    ),
    ComponentRecovered(
        server="web02", component="service", stale_since=T, recovered_at=T, outage_seconds=12.5
    ),
    MonitorResumed(down_since=T, resumed_at=T, detector="scheduler-b"),
    TargetConfigured(server="proget01", url="https://proget01:8624", verify_tls=False),
    TargetRemoved(server="proget01"),
    CollectionFailed(server="proget01", kind="refused", detail="connection refused", at=T),
    ChannelConfigured(
        name="ops",
        kind="webhook",
        target="https://hooks.example/***",
        url_encrypted="gAAAA-sealed",
        on=["stale", "recovered"],
        servers=["proget01"],
    ),
    ChannelRemoved(name="ops"),
    SilenceCreated(id="s1", starts_at=T, ends_at=T, servers=None, comment="patching"),
    SilenceEnded(id="s1", at=T),
]


def stored(event) -> dict:
    return orjson.loads(orjson.dumps(event))


def row(type_: str, schema_version: int, data: dict, position: int = 1) -> tuple:
    """A row as the store reads it."""
    stream = f"{data.get('server')}/{data.get('component')}"
    meta = '{"actor":"agent-1"}'
    text = orjson.dumps(data).decode()
    return (position, uuid.uuid4(), stream, 1, type_, schema_version, text, meta, T, T)


def test_the_samples_cover_the_whole_catalog():
    assert {type(e).type for e in SAMPLES} == set(CATALOG)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_fast_decoding_equals_the_catalogs_decoding(event):
    fast = recorded(row(event.type, event.schema_version, stored(event))).event

    assert fast == decode(event.type, event.schema_version, stored(event)) == event
    assert type(fast) is type(event)
    assert dataclasses.replace(fast) == event  # an ordinary instance of the frozen class
    with pytest.raises(dataclasses.FrozenInstanceError):  # still immutable
        setattr(fast, dataclasses.fields(fast)[0].name, "other")
    assert fast.stream == event.stream


def test_absent_optional_fields_get_their_defaults():
    data = {"server": "web01", "component": "web", "sent_at": T.isoformat()}
    assert recorded(row("HeartbeatRecorded", 2, data)).event == HeartbeatRecorded(
        server="web01", component="web", sent_at=T
    )


def test_malformed_payloads_fail_as_the_catalogs_decoding_does():
    full = stored(SAMPLES[1])
    missing = {k: v for k, v in full.items() if k != "component"} | {"cpu": 3}  # same size
    unknown = {"server": "web01", "component": "web", "sent_at": T.isoformat(), "cpu": 3}
    for data in (missing, unknown):
        with pytest.raises(TypeError):
            decode("HeartbeatRecorded", 2, dict(data))
        with pytest.raises(TypeError):
            recorded(row("HeartbeatRecorded", 2, data))


def test_an_old_schema_version_is_upcast():
    v1 = {"server": "db1", "component": "Web", "sent_at": T.isoformat(), "key_fingerprint": None}
    assert recorded(row("HeartbeatRecorded", 1, v1)).event == HeartbeatRecorded(
        server="db1", component="web", sent_at=T
    )


def test_a_row_becomes_the_same_recorded_event_as_the_dataclass_builds():
    event = SAMPLES[0]
    event_id = uuid.uuid4()
    row = (
        7,
        event_id,
        event.stream,
        3,
        event.type,
        event.schema_version,
        orjson.dumps(event).decode(),
        '{"actor":"agent-1"}',
        T,
        T,
    )
    record = recorded(row)

    assert record == RecordedEvent(
        7, event_id, "web01/web", 3, "HeartbeatRecorded", 2, event, {"actor": "agent-1"}, T, T
    )
    assert type(record) is RecordedEvent
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.position = 8


def test_records_never_share_their_metadata():
    event = SAMPLES[1]
    data = orjson.dumps(event).decode()
    meta = '{"actor":"agent-1","source":"10.0.0.5"}'
    nested = '{"actor":"admin","changes":{"a":[1,2]}}'
    rows = [(i, uuid.uuid4(), event.stream, i, event.type, 2, data, meta, T, T) for i in (1, 2)]
    first, second = (recorded(row) for row in rows)

    first.metadata["actor"] = "tampered"

    assert second.metadata == {"actor": "agent-1", "source": "10.0.0.5"}
    assert recorded(rows[0]).metadata == {"actor": "agent-1", "source": "10.0.0.5"}
    one, two = (recorded((*rows[0][:7], nested, T, T)) for _ in range(2))
    one.metadata["changes"]["a"].append(3)
    assert two.metadata == {"actor": "admin", "changes": {"a": [1, 2]}}
