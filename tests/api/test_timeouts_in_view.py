"""The scheduler's timeouts as an API user sees them, and the gap recorded at start-up."""

from datetime import timedelta

from api.services import services
from cli.serve import _record_monitor_gap
from scheduler.sweep import emit_timeouts
from tests.api.conftest import heartbeat


def _service(client, tokens):
    view = client.get("/api/v1/cluster", headers=tokens["viewer"]).get_json()
    [server] = view["servers"]
    return next(c for c in server["components"] if c["name"] == "service")


def test_a_silent_service_is_timed_out_at_its_exact_expiry(app, client, tokens, post, clock):
    post(heartbeat())
    last = clock.now
    clock.advance(minutes=5, seconds=1)  # one sweep after the 5-minute stale timeout
    [timeout] = emit_timeouts(services(app).store, clock.now)
    assert timeout.event.expired_at == last + timedelta(minutes=5)
    service = _service(client, tokens)
    assert service["heartbeat"]["state"] == "stale"
    assert service["heartbeat"]["stale_since"].startswith("2026-11-27T10:05:00")
    events = client.get(
        "/api/v1/events?type=ComponentTimedOut", headers=tokens["viewer"]
    ).get_json()["events"]
    assert [e["data"]["expired_at"] for e in events] == ["2026-11-27T10:05:00+00:00"]
    # a second sweep adds nothing
    assert emit_timeouts(services(app).store, clock.now) == []


def test_after_the_whole_service_was_down_components_get_one_full_timeout(
    app, client, tokens, post, clock
):
    post(heartbeat())
    clock.advance(hours=2)  # monitor down: nobody could report
    _record_monitor_gap(app)
    store = services(app).store
    assert [e.type for e in store.read_all(0, None)] == ["HeartbeatRecorded", "MonitorResumed"]
    assert _service(client, tokens)["heartbeat"]["state"] == "current"
    clock.advance(minutes=1)
    post(heartbeat())  # the first heartbeat after the restart is no outage
    assert [e.type for e in store.read_all(0, None)][-1] == "HeartbeatRecorded"
    assert "ComponentTimedOut" not in [e.type for e in store.read_all(0, None)]


def test_a_short_restart_records_no_gap(app, post, clock):
    post(heartbeat())
    clock.advance(seconds=5)
    _record_monitor_gap(app)
    assert [e.type for e in services(app).store.read_all(0, None)] == ["HeartbeatRecorded"]
