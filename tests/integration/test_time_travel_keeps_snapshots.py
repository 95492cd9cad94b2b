"""Time travel without a scheduler: a read that folds a long stretch of the log keeps snapshots
on its way, so the next reads near that time fold a short tail (on both databases)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import sqlalchemy as sa

from api.services import services
from api.tokens import create_token
from cli.main import create_app
from domain.state import ClusterState, fold
from projections.readmodel import snapshots
from projections.readmodel.tables import snapshots as snapshots_table
from projections.readmodel.timetravel import view_at
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps


def _log(store, clock, events: int) -> None:
    """`events` heartbeats of 40 servers, 100 per commit, one commit every 10 s."""
    for start in range(0, events, 100):
        store.append([ps.beat(store, f"s{i % 40:02d}") for i in range(start, start + 100)])
        clock.advance(seconds=10)


def _kept(store) -> list[int]:
    with store.engine.connect() as conn:
        query = sa.select(snapshots_table.c.position).order_by(snapshots_table.c.position)
        return list(conn.execute(query).scalars())


def test_a_long_fold_keeps_snapshots_and_the_next_read_starts_from_them(store, clock):
    _log(store, clock, 5_600)
    recorded = list(store.iter_all())
    t = recorded[-1].recorded_at
    expected = cluster_view(fold(recorded), t)
    assert _kept(store) == []

    assert view_at(store, at=t) == expected
    # one along the way (every KEEP_EVERY events) and one where the read ended
    assert _kept(store) == [snapshots.KEEP_EVERY, 5_600]

    # The next read at that time starts from the one at its position: doctored, it shows.
    _doctor(store, recorded, 5_600)
    assert view_at(store, at=t)["configuration"]["load_balancing"] is False
    # An earlier read starts from the one along the way (and keeps no more: a short tail).
    _doctor(store, recorded, snapshots.KEEP_EVERY)
    earlier = view_at(store, position=5_200)
    assert earlier["configuration"]["load_balancing"] is False
    assert _kept(store) == [snapshots.KEEP_EVERY, 5_600]


def _doctor(store, recorded, position: int) -> None:
    """Replace the snapshot at `position` by one no event of this log could produce."""
    state = fold(recorded[:position])
    state.configuration.load_balancing = False
    with store.engine.begin() as conn:
        conn.execute(
            snapshots_table.update()
            .where(snapshots_table.c.position == position)
            .values(state=snapshots.encode(state))
        )


def test_a_short_fold_keeps_nothing(store, clock):
    _log(store, clock, 400)
    view_at(store, at=clock())
    assert _kept(store) == []


def test_readers_folding_the_same_stretch_write_each_snapshot_once(store, clock):
    _log(store, clock, 1_100)
    first = snapshots.fold_keeping(store, ClusterState(), store.iter_all(up_to=1_100))
    # another reader that started from the same (no) snapshot at the same time
    second = snapshots.fold_keeping(store, ClusterState(), store.iter_all(up_to=1_100))
    assert first == second
    assert _kept(store) == [1_100]
    assert view_at(store, at=clock()) == cluster_view(first, clock())


def test_cluster_at_a_time_through_the_api_keeps_a_snapshot(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True})
    svc = services(app)
    try:
        token = create_token(svc.engine, svc.clock, "viewer", "viewer")
        headers = {"Authorization": f"Bearer {token}"}
        _log(svc.store, clock, 700)
        at = quote((clock() - timedelta(seconds=5)).isoformat())
        client = app.test_client()
        first = client.get(f"/api/v1/cluster?at={at}", headers=headers)
        assert first.status_code == 200
        assert _kept(svc.store) == [700]
        second = client.get(f"/api/v1/cluster?at={at}", headers=headers)
        assert second.get_json() == first.get_json()
        assert first.get_json()["server_count"] == 40
    finally:
        svc.engine.dispose()
