"""Time travel: nearest snapshot + tail, staleness evaluated then; `clustermon at`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa

from api.services import services
from cli.main import create_app
from domain.state import fold
from projections.readmodel import snapshots
from projections.readmodel.tables import snapshots as snapshots_table
from projections.readmodel.timetravel import state_at, view_at
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps


def _state_of(view, server="web01", component="service"):
    (srv,) = [s for s in view["servers"] if s["name"] == server]
    (comp,) = [c for c in srv["components"] if c["name"] == component]
    return comp["heartbeat"]["state"]


def test_view_at_a_time_folds_exactly_the_events_recorded_until_then(store, clock):
    t0 = clock()
    store.append([ps.beat(store, "web01", "service")])
    clock.advance(minutes=2)
    store.append([ps.beat(store, "web02", "web")])
    clock.advance(minutes=2)
    store.append([ps.remove("web02", "web")])

    assert [s["name"] for s in view_at(store, at=t0)["servers"]] == ["web01"]
    mid = view_at(store, at=t0 + timedelta(minutes=3))
    assert [s["name"] for s in mid["servers"]] == ["web01", "web02"]
    assert mid["as_of"] == {"position": 2, "time": t0 + timedelta(minutes=3)}
    assert _state_of(view_at(store, at=t0 + timedelta(minutes=5)), "web01") == "current"
    late = view_at(store, at=t0 + timedelta(minutes=5, seconds=1))
    assert _state_of(late, "web01") == "stale"  # evaluated at `at`, not at the last event
    assert [s["name"] for s in late["servers"]] == ["web01"]


def test_view_at_a_position_is_evaluated_at_that_events_time(store, clock):
    t0 = clock()
    store.append([ps.beat(store, "web01"), ps.beat(store, "web02")])
    clock.advance(minutes=10)
    store.append([ps.beat(store, "web03")])
    view = view_at(store, position=1)
    assert view["as_of"] == {"position": 1, "time": t0}
    assert [s["name"] for s in view["servers"]] == ["web01"]
    assert _state_of(view_at(store, position=3), "web01") == "stale"
    assert state_at(store, position=2).position == 2


def test_time_travel_refuses_what_it_cannot_show(store, clock):
    with pytest.raises(ValueError, match="empty"):
        view_at(store, at=clock())
    store.append([ps.beat(store)])
    with pytest.raises(ValueError, match="before the log"):
        view_at(store, at=clock() - timedelta(seconds=1))
    with pytest.raises(ValueError, match="beyond the head"):
        view_at(store, position=2)
    with pytest.raises(ValueError, match="at least 1"):
        view_at(store, position=0)
    with pytest.raises(ValueError, match="not both"):
        view_at(store, at=clock(), position=1)


def test_a_time_without_zone_is_utc(store, clock):
    store.append([ps.beat(store)])
    naive = clock().astimezone(UTC).replace(tzinfo=None)
    assert view_at(store, at=naive) == view_at(store, at=clock())


def test_snapshots_at_the_cadence_and_time_travel_uses_them(store, clock):
    for i in range(12):
        store.append([ps.beat(store, f"s{i % 4}")])
        clock.advance(seconds=10)
    assert snapshots.take_snapshot(store, every_events=5) == 12
    with store.engine.connect() as conn:
        positions = conn.execute(sa.select(snapshots_table.c.position)).scalars().all()
    assert sorted(positions) == [5, 10, 12]
    assert snapshots.take_snapshot(store, every_events=5) is None  # nothing new

    # Prove the snapshot is read (not the whole log): doctor the one at position 10.
    recorded = list(store.iter_all())
    t = recorded[10].recorded_at
    expected = cluster_view(fold(recorded[:11]), t)
    assert view_at(store, at=t) == expected
    with store.engine.begin() as conn:
        state = fold(recorded[:10])
        state.configuration.load_balancing = False  # no event of this log says so
        conn.execute(
            snapshots_table.update()
            .where(snapshots_table.c.position == 10)
            .values(state=snapshots.encode(state))
        )
    assert view_at(store, at=t)["configuration"]["load_balancing"] is False


def test_snapshot_cadence_in_time_and_force(store, clock):
    store.append([ps.beat(store)])
    assert snapshots.take_snapshot(store, every_events=100, every_seconds=600) == 1  # first
    store.append([ps.beat(store)])
    assert snapshots.take_snapshot(store, every_events=100, every_seconds=600) is None
    clock.advance(seconds=601)
    assert snapshots.take_snapshot(store, every_events=100, every_seconds=600) == 2
    store.append([ps.beat(store)])
    assert snapshots.take_snapshot(store, every_events=100, every_seconds=None) is None
    assert snapshots.take_snapshot(store, every_events=100, force=True) == 3


# --- the done-when check ------------------------------------------------------------------------


def test_clustermon_at_shows_stale_after_expiry_and_current_a_second_before(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True})
    store = services(app).store
    try:
        last_beat = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
        clock.now = last_beat
        store.append([ps.beat(store, "web01", "service")])
        clock.advance(hours=1)
        store.append([ps.beat(store, "web02", "web")])  # the log goes on after the expiry
        expiry = last_beat + timedelta(seconds=300)  # the default stale timeout
        runner = app.test_cli_runner()

        before = runner.invoke(args=["at", (expiry - timedelta(seconds=1)).isoformat()])
        assert before.exit_code == 0, before.output
        view = orjson.loads(before.stdout)
        assert _state_of(view) == "current"

        after = runner.invoke(args=["at", (expiry + timedelta(seconds=1)).isoformat()])
        assert after.exit_code == 0, after.output
        view = orjson.loads(after.stdout)
        assert _state_of(view) == "stale"
        (server,) = view["servers"]
        assert server["health"] == "error"
        assert server["reasons"] == ["service: no heartbeat for 5 min 1 s (stale timeout 5 min)"]

        early = runner.invoke(args=["at", "2026-11-27T09:00:00Z"])
        assert early.exit_code != 0 and "before the log" in early.output
        bad = runner.invoke(args=["at", "yesterday"])
        assert bad.exit_code != 0 and "ISO-8601" in bad.output
    finally:
        services(app).engine.dispose()
