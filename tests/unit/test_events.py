from dataclasses import fields
from datetime import UTC, datetime

import orjson
import pytest

from api.event_schemas import EVENT_SCHEMAS
from domain.events import CATALOG, HeartbeatRecorded
from eventstore.upcasting import decode


def test_every_event_type_has_a_payload_schema_naming_its_fields():
    for name, cls in CATALOG.items():
        assert cls.schema_version >= 1
        assert set(EVENT_SCHEMAS[name]().fields) == {f.name for f in fields(cls)}


def test_events_are_immutable():
    beat = HeartbeatRecorded(server="web01", component="web", sent_at=datetime.now(UTC))
    with pytest.raises(AttributeError):
        beat.status = "error"


def test_a_v1_heartbeat_is_read_as_v2():
    # What a 2025 agent stored: product-style component name and the old fingerprint field.
    stored_v1 = {
        "server": "web01",
        "component": "Service",
        "sent_at": "2026-11-27T10:00:00+00:00",
        "key_fingerprint": "ab" * 32,
    }
    event = decode("HeartbeatRecorded", 1, stored_v1)
    assert event == HeartbeatRecorded(
        server="web01",
        component="service",
        sent_at=datetime(2026, 11, 27, 10, tzinfo=UTC),
        encryption_key_fingerprint="ab" * 32,
    )
    assert event.stream == "web01/service"


def test_current_payload_round_trips_through_json():
    beat = HeartbeatRecorded(
        server="web01", component="web", sent_at=datetime(2026, 1, 1, tzinfo=UTC), ip="10.0.0.5"
    )
    stored = orjson.loads(orjson.dumps(beat))
    assert decode(beat.type, beat.schema_version, stored) == beat
    assert EVENT_SCHEMAS["HeartbeatRecorded"]().validate(stored) == {}
