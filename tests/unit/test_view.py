from datetime import timedelta

from domain.state import ClusterState, fold
from projections.readmodel.view import cluster_view
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


# --- the inlined fast path equals the rules --------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from domain import rules  # noqa: E402


def _view_by_the_rules(state, now):
    """The view computed only through rules.py (what cluster_view inlines for speed)."""
    config = state.configuration
    beats = {
        (c.server, c.name): rules.heartbeat(c, config, now, state.monitor_resumed_at)
        for c in state.components()
    }
    refs = rules.references(state, {k for k, b in beats.items() if b.state == "current"})
    servers = []
    for server in sorted(state.servers.values(), key=lambda s: s.name):
        findings, components = [], []
        for c in sorted(server.components.values(), key=lambda c: c.name):
            beat = beats[(server.name, c.name)]
            health, reasons = rules.component_health(c, config, beat)
            findings.append((c.name, health, reasons))
            components.append((c.name, health, reasons, beat.state, beat.stale_since))
        version_ok, key_ok = rules.version_in_sync(server, refs), rules.key_in_sync(server, refs)
        health, reasons = rules.server_health(findings, version_ok, key_ok, refs, server)
        servers.append((server.name, health, reasons, version_ok, key_ok, components))
    return servers


def _summary(view):
    return [
        (
            s["name"],
            s["health"],
            s["reasons"],
            s["version_in_sync"],
            s["encryption_key_in_sync"],
            [
                (
                    c["name"],
                    c["health"],
                    c["reasons"],
                    c["heartbeat"]["state"],
                    c["heartbeat"]["stale_since"],
                )
                for c in s["components"]
            ],
        )
        for s in view["servers"]
    ]


STEP = st.one_of(
    st.tuples(
        st.just("beat"),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["web", "service"]),
        st.sampled_from(["ok", "warning", "error"]),
        st.sampled_from(["verified", "unverified", "failed"]),
        st.sampled_from(["1.0", "1.1", None]),
        st.sampled_from(["a" * 64, "b" * 64, None]),
    ),
    st.tuples(st.just("wait"), st.integers(0, 100_000)),
    st.tuples(st.just("config"), st.sampled_from([60, 300, 900])),
    st.tuples(st.just("timeout"), st.sampled_from(["a", "b"]), st.sampled_from(["web", "service"])),
    st.tuples(st.just("resume")),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=25), later=st.integers(0, 200_000))
def test_cluster_view_agrees_with_the_rules(steps, later):
    log = Log()
    for step in steps:
        if step[0] == "beat":
            _, server, component, status, verification, version, key = step
            log.heartbeat(
                server,
                component,
                status=status,
                verification=verification,
                product_version=version,
                encryption_key_fingerprint=key,
            )
        elif step[0] == "wait":
            log.advance(seconds=step[1])
        elif step[0] == "config":
            log.configure(stale_timeout_seconds=step[1])
        elif step[0] == "timeout":
            log.timed_out(step[1], step[2], log.now - timedelta(minutes=3))
        else:
            log.resumed(log.now - timedelta(hours=1))
    state = fold(log.events)
    now = log.now + timedelta(seconds=later)
    assert _summary(cluster_view(state, now)) == _view_by_the_rules(state, now)
