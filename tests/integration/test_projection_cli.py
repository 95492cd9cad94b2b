"""`clustermon rebuild`, `replay`, `snapshot` and `project` through Flask's CLI runner."""

from __future__ import annotations

import orjson
import pytest
import sqlalchemy as sa

from api.services import services
from cli.main import create_app
from domain.state import fold
from projections.readmodel.current import current_view
from projections.readmodel.tables import snapshots
from projections.readmodel.view import cluster_view
from tests.integration import projection_support as ps


@pytest.fixture
def app(database_url, clock):
    app = create_app({"DATABASE_URL": database_url, "CLOCK": clock, "TESTING": True})
    yield app
    services(app).engine.dispose()


def test_rebuild_fills_the_read_tables_and_reports(app, clock):
    store = services(app).store
    store.append([ps.beat(store, "a"), ps.beat(store, "b", "web"), ps.remove("a")])
    result = app.test_cli_runner().invoke(args=["rebuild"])
    assert result.exit_code == 0, result.output
    assert "rebuilt the cluster view from 3 events" in result.stderr
    assert current_view(store.engine, clock()) == cluster_view(fold(store.iter_all()), clock())


def test_replay_prints_counts_and_writes_nothing(app):
    store = services(app).store
    store.append([ps.beat(store, "a"), ps.configure(load_balancing=False)])
    result = app.test_cli_runner().invoke(args=["replay"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["events"] == 2
    assert report["by_type"] == {"ConfigurationChanged": 1, "HeartbeatRecorded": 1}
    assert current_view(store.engine, store.clock())["server_count"] == 0


def test_snapshot_command(app):
    store = services(app).store
    store.append([ps.beat(store, "a")])
    runner = app.test_cli_runner()
    first = runner.invoke(args=["snapshot"])
    assert first.exit_code == 0 and "snapshot at position 1" in first.stderr
    again = runner.invoke(args=["snapshot"])
    assert again.exit_code == 0 and "no snapshot due" in again.stderr
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(snapshots)).scalar() == 1


def test_project_catches_up_and_prints_the_lag(app):
    store = services(app).store
    store.append([ps.beat(store, "a"), ps.beat(store, "b")])
    result = app.test_cli_runner().invoke(args=["project"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    assert out["applied"] == 2 and out["lag"]["events"] == 0


def test_at_by_position(app):
    store = services(app).store
    store.append([ps.beat(store, "a")])
    store.append([ps.beat(store, "b")])
    result = app.test_cli_runner().invoke(args=["at", "--position", "1"])
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in orjson.loads(result.stdout)["servers"]] == ["a"]
    beyond = app.test_cli_runner().invoke(args=["at", "--position", "9"])
    assert beyond.exit_code != 0 and "beyond the head" in beyond.output
