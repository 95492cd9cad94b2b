"""Targets in the one fold and their decisions: what GET /targets, the poller and the reasons
read comes from here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain import decisions
from domain.events import (
    COLLECTOR_ACTOR,
    CollectionFailed,
    HeartbeatRecorded,
    RecordedEvent,
    TargetConfigured,
    TargetRemoved,
)
from domain.state import ClusterState, fold
from projections.readmodel import snapshots

T = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def _log(*events):
    """RecordedEvents in order, each in its stream at the next version."""
    versions: dict[str, int] = {}
    out = []
    for position, (event, who) in enumerate(events, start=1):
        versions[event.stream] = versions.get(event.stream, 0) + 1
        out.append(
            RecordedEvent(
                position=position,
                event_id=uuid.uuid4(),
                stream=event.stream,
                version=versions[event.stream],
                type=event.type,
                schema_version=event.schema_version,
                event=event,
                metadata={"actor": who},
                occurred_at=T,
                recorded_at=T + timedelta(seconds=position),
            )
        )
    return out


def _beat(server, actor):
    return HeartbeatRecorded(server=server, component="web", sent_at=T), actor


def test_a_configured_target_is_in_the_state_with_its_settings_and_goes_on_removal():
    configured = TargetConfigured(server="p1", url="https://p1:8624", interval_seconds=10)
    state = fold(_log((configured, "admin")))
    target = state.targets["p1"]
    assert (target.url, target.interval_seconds, target.timeout_seconds, target.verify_tls) == (
        "https://p1:8624",
        10,
        5,
        True,
    )
    assert target.failure is None
    state = fold(_log((configured, "admin"), (TargetRemoved(server="p1"), "admin")))
    assert state.targets == {}


def test_a_failure_stays_until_a_heartbeat_of_the_collector_not_one_of_an_agent():
    failed = CollectionFailed(server="p1", kind="refused", detail="connection refused", at=T)
    log = [
        (TargetConfigured(server="p1", url="http://p1"), "admin"),
        (failed, COLLECTOR_ACTOR),
        _beat("p1", "agent-p1"),
    ]
    state = fold(_log(*log))
    assert state.targets["p1"].failure.kind == "refused"
    state = fold(_log(*log, _beat("p1", COLLECTOR_ACTOR)))
    assert state.targets["p1"].failure is None


def test_targets_survive_the_snapshot_codec_and_the_dict_form():
    failed = CollectionFailed(server="p1", kind="tls", detail="self-signed", at=T)
    state = fold(_log((TargetConfigured(server="p1", url="https://p1"), "admin"), (failed, "c")))
    for copy in (
        snapshots.decode(snapshots.encode(state)),
        ClusterState.from_dict(_roundtrip(state.to_dict())),
    ):
        assert copy.targets == state.targets
        assert copy.targets["p1"].failure.at == T


def _roundtrip(data):
    import orjson

    return orjson.loads(orjson.dumps(data))


def test_a_change_names_only_what_changes_and_an_identical_put_records_nothing():
    state = fold(_log((TargetConfigured(server="p1", url="http://p1", timeout_seconds=5), "a")))
    current = state.targets["p1"]
    assert decisions.target_change("p1", current, {"url": "http://p1"}) is None
    change = decisions.target_change("p1", current, {"interval_seconds": 60})
    assert change == TargetConfigured(server="p1", url="http://p1", interval_seconds=60)


def test_a_timeout_not_shorter_than_the_interval_is_refused_on_the_field_named():
    with pytest.raises(decisions.InvalidConfiguration) as refused:
        decisions.target_change("p1", None, {"url": "http://p1", "interval_seconds": 5})
    assert "interval_seconds" in refused.value.errors
    with pytest.raises(decisions.InvalidConfiguration) as refused:
        decisions.target_change("p1", None, {"url": "http://p1", "timeout_seconds": 40})
    assert "timeout_seconds" in refused.value.errors
    with pytest.raises(decisions.InvalidConfiguration) as refused:
        decisions.target_change("p1", None, {"interval_seconds": 60})
    assert "url" in refused.value.errors


def test_removing_an_unknown_target_is_refused():
    with pytest.raises(decisions.NotATarget):
        decisions.target_removal("p9", None)


def test_the_pollers_heartbeats_keep_the_key_fingerprint_the_agent_reported():
    key, new_key = "a" * 64, "b" * 64

    def beat(fingerprint, actor):
        event = HeartbeatRecorded(
            server="p1", component="service", sent_at=T, encryption_key_fingerprint=fingerprint
        )
        return event, actor

    state = fold(_log(beat(key, "agent-p1"), beat(None, COLLECTOR_ACTOR)))
    assert state.component("p1", "service").encryption_key_fingerprint == key
    state = fold(_log(beat(key, "agent-p1"), beat(None, COLLECTOR_ACTOR), beat(new_key, "agent")))
    assert state.component("p1", "service").encryption_key_fingerprint == new_key
