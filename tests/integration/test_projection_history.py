"""A component's transitions over time, each with its reason."""

from __future__ import annotations

from datetime import timedelta

from projections.audit.history import component_history
from tests.integration import projection_support as ps


def test_history_of_a_component_through_its_life(store, clock):
    t0 = clock()
    store.append([ps.beat(store, "web01", "service")])
    clock.advance(seconds=30)
    store.append([ps.beat(store, "web01", "service")])  # nothing changed: not a transition
    store.append([ps.beat(store, "web01", "web")])  # another component: not in this history
    clock.advance(seconds=30)
    store.append([ps.beat(store, "web01", "service", status="error", message="disk full")])
    clock.advance(minutes=10)
    expiry = t0 + timedelta(seconds=60 + 300)
    store.append([ps.timed_out(store, "web01", "service", expiry)])
    store.append([ps.configure(stale_timeout_seconds=600)])
    store.append([ps.configure(web_stale_timeout_seconds=3600)])  # not this component's
    clock.advance(minutes=1)
    # As ingest records it: the recovery, then the heartbeat that caused it, in one append.
    store.append(
        [
            ps.recovered(store, "web01", "service", expiry),
            ps.beat(store, "web01", "service", product_version="2025.11"),
        ]
    )
    store.append([ps.remove("web01", "service")])
    clock.advance(minutes=1)
    store.append([ps.beat(store, "web01", "service")])

    history = component_history(store, "web01", "service")
    rows = [(h["event"], h["state"], h["health"], h["reason"]) for h in history]
    assert rows == [
        ("HeartbeatRecorded", "current", "ok", "first heartbeat"),
        ("HeartbeatRecorded", "current", "error", "status ok → error; message: disk full"),
        (
            "ComponentTimedOut",
            "stale",
            "error",
            "no heartbeat for 5 min (timeout in force, configuration version 0); detected by test",
        ),
        ("ConfigurationChanged", "stale", "error", "configuration changed: timeout (s) 300 → 600"),
        (
            "ComponentRecovered",
            "current",
            "ok",
            "heartbeat again after 6 min without one; status error → ok; version 2025.10 → 2025.11",
        ),
        ("ComponentRemoved", "removed", None, "removed from the cluster by hand"),
        ("HeartbeatRecorded", "current", "ok", "heartbeat after removal: back in the cluster"),
    ]
    assert history[2]["at"] == expiry  # a timeout is dated at the logical expiry
    assert history[0]["at"] == t0
    positions = [h["position"] for h in history]
    assert positions == sorted(positions)


def test_history_shows_staleness_by_rule_when_the_configuration_shortens_the_timeout(store, clock):
    store.append([ps.beat(store, "web01", "service")])
    clock.advance(minutes=3)
    store.append([ps.configure(stale_timeout_seconds=60)])
    clock.advance(minutes=1)
    store.append([ps.beat(store, "web01", "service")])
    rows = [(h["state"], h["reason"]) for h in component_history(store, "web01", "service")]
    assert rows == [
        ("current", "first heartbeat"),
        ("stale", "configuration changed: timeout (s) 300 → 60; now stale under the new timeout"),
        ("current", "heartbeat after it had gone stale"),
    ]


def test_unknown_component_has_no_history(store):
    store.append([ps.beat(store, "web01", "service")])
    assert component_history(store, "web01", "web") == []
    assert component_history(store, "nobody", "service") == []
