from datetime import timedelta

from projections.state import ClusterState, fold
from projections.view import cluster_view
from tests.unit.projection_helpers import T0, Log


def test_the_view_has_the_contract_fields():
    log = Log()
    log.heartbeat("web01", "service", os="Ubuntu", os_version="24.04", ip="10.0.0.5")
    view = cluster_view(fold(log.events), T0 + timedelta(seconds=4.2))
    assert view["as_of"] == {"position": 1, "time": T0 + timedelta(seconds=4.2)}
    assert view["configuration"] == {
        "load_balancing": True,
        "automatic_failover": True,
        "heartbeat_frequency_seconds": 30,
        "stale_timeout_seconds": 300,
        "web_stale_timeout_seconds": 86400,
        "version": 0,
    }
    assert view["server_count"] == 1
    (server,) = view["servers"]
    for key in ("name", "os", "os_version", "ip", "health", "version_in_sync"):
        assert key in server
    assert server["encryption_key_in_sync"] is True
    (component,) = server["components"]
    assert {k: component[k] for k in ("name", "status", "verification", "health", "reasons")} == {
        "name": "service",
        "status": "ok",
        "verification": "verified",
        "health": "ok",
        "reasons": [],
    }
    assert (component["product"], component["product_version"]) == ("ProGet", "2025.10")
    beat = component["heartbeat"]
    assert beat["last_at"] == T0
    assert beat["age_seconds"] == 4.2
    assert beat["state"] == "current" and beat["stale_since"] is None


def test_servers_and_components_are_sorted_by_name():
    log = Log()
    log.heartbeat("b", "web")
    log.heartbeat("a", "web")
    log.heartbeat("a", "service")
    view = cluster_view(fold(log.events), log.now)
    assert [s["name"] for s in view["servers"]] == ["a", "b"]
    assert [c["name"] for c in view["servers"][0]["components"]] == ["service", "web"]


def test_a_removed_component_is_absent_until_it_reports_again():
    log = Log()
    log.heartbeat("a", "web")
    log.heartbeat("b", "service")
    log.remove("b", "service")
    view = cluster_view(fold(log.events), log.now)
    assert [s["name"] for s in view["servers"]] == ["a"]
    assert view["server_count"] == 1
    log.heartbeat("b", "service")
    assert cluster_view(fold(log.events), log.now)["server_count"] == 2


def test_stale_since_is_the_logical_expiry():
    log = Log()
    log.heartbeat("a", "service")
    view = cluster_view(fold(log.events), T0 + timedelta(hours=1))
    beat = view["servers"][0]["components"][0]["heartbeat"]
    assert beat["state"] == "stale"
    assert beat["stale_since"] == T0 + timedelta(minutes=5)


def test_an_empty_cluster():
    view = cluster_view(ClusterState(), T0)
    assert view["server_count"] == 0 and view["servers"] == []
    assert view["as_of"]["position"] == 0


def test_the_view_does_not_change_the_state():
    log = Log()
    log.heartbeat("a", "service")
    state = fold(log.events)
    before = state.copy()
    cluster_view(state, T0 + timedelta(days=3))
    assert state == before
