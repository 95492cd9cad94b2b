"""The decisions, without a database: facts in, events out."""

from datetime import UTC, datetime, timedelta

import pytest

from domain import decisions
from domain.decisions import InvalidConfiguration, NotInCluster, Policy, Tail
from domain.events import ComponentRecovered, ComponentTimedOut, HeartbeatRecorded
from domain.state import Configuration

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
POLICY = Policy(Configuration(), None, (0, 0))
BEAT = HeartbeatRecorded(server="web01", component="service", sent_at=T0)


def _tail(type_, recorded_at=T0, expired_at=None):
    return Tail(position=7, version=3, type=type_, recorded_at=recorded_at, expired_at=expired_at)


def test_a_heartbeat_in_time_ends_nothing():
    tail = _tail("HeartbeatRecorded")
    assert decisions.outage_events(BEAT, tail, POLICY, T0 + timedelta(seconds=300)) == []
    assert decisions.outage_events(BEAT, None, POLICY, T0) == []


def test_a_heartbeat_after_a_recorded_timeout_records_the_recovery():
    tail = _tail("ComponentTimedOut", expired_at=T0 + timedelta(seconds=300))
    [recovered] = decisions.outage_events(BEAT, tail, POLICY, T0 + timedelta(seconds=360))
    assert isinstance(recovered, ComponentRecovered)
    assert recovered.stale_since == T0 + timedelta(seconds=300)
    assert recovered.outage_seconds == 60


def test_a_late_heartbeat_no_sweep_saw_records_the_timeout_at_its_logical_expiry():
    now = T0 + timedelta(seconds=400)
    timed_out, recovered = decisions.outage_events(BEAT, _tail("HeartbeatRecorded"), POLICY, now)
    assert isinstance(timed_out, ComponentTimedOut)
    assert timed_out.expired_at == T0 + timedelta(seconds=300)
    assert (timed_out.detector, timed_out.last_heartbeat_position) == ("ingest", 7)
    assert recovered.stale_since == timed_out.expired_at and recovered.recovered_at == now


def test_a_configuration_change_keeps_only_what_changes():
    current = Configuration()
    change = decisions.configuration_change(current, {"stale_timeout_seconds": 120})
    assert change is not None and change.changes == {"stale_timeout_seconds": 120}
    assert decisions.configuration_change(current, {"load_balancing": True}) is None


def test_a_stale_timeout_under_two_heartbeat_periods_is_refused():
    with pytest.raises(InvalidConfiguration) as refused:
        decisions.configuration_change(Configuration(), {"stale_timeout_seconds": 59})
    assert "two heartbeat periods" in refused.value.errors["stale_timeout_seconds"][0]


def test_only_a_component_in_the_cluster_can_be_removed():
    removal = decisions.removal("web01", "web", _tail("HeartbeatRecorded"))
    assert (removal.server, removal.component) == ("web01", "web")
    for tail in (None, _tail("ComponentRemoved")):
        with pytest.raises(NotInCluster):
            decisions.removal("web01", "web", tail)
