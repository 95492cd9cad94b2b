from datetime import timedelta

from domain.state import ClusterState, apply, fold
from tests.unit.projection_helpers import T0, Log


def test_a_heartbeat_adds_its_server_and_component():
    log = Log()
    log.heartbeat("srv1", "web", os="Ubuntu", os_version="24.04", ip="10.0.0.5")
    state = fold(log.events)
    server = state.servers["srv1"]
    assert (server.os, server.os_version, server.ip) == ("Ubuntu", "24.04", "10.0.0.5")
    component = server.components["web"]
    assert component.last_heartbeat_at == T0
    assert component.last_heartbeat_position == 1
    assert state.position == 1 and state.recorded_at == T0


def test_a_heartbeat_without_os_keeps_the_known_one():
    log = Log()
    log.heartbeat(os="Ubuntu", ip="10.0.0.5")
    log.heartbeat(os=None, ip=None)
    assert fold(log.events).servers["srv1"].os == "Ubuntu"


def test_removal_drops_the_component_and_a_later_heartbeat_brings_it_back():
    log = Log()
    log.heartbeat("srv1", "web")
    log.heartbeat("srv1", "service")
    log.remove("srv1", "service")
    state = fold(log.events)
    assert state.component("srv1", "service") is None
    assert state.component("srv1", "web") is not None

    log.remove("srv1", "web")
    assert "srv1" not in fold(log.events).servers  # nothing left of the server

    log.advance(minutes=1)
    log.heartbeat("srv1", "service", status="warning")
    back = fold(log.events).component("srv1", "service")
    assert back is not None and back.status == "warning"
    assert back.last_heartbeat_at == T0 + timedelta(minutes=1)


def test_removing_an_unknown_component_changes_nothing():
    log = Log()
    log.heartbeat("srv1", "web")
    log.remove("ghost", "web")
    log.remove("srv1", "service")
    assert list(fold(log.events).servers) == ["srv1"]


def test_configuration_changes_merge_and_count_versions():
    log = Log()
    log.configure(stale_timeout_seconds=60)
    log.configure(load_balancing=False, unknown_setting=1)
    config = fold(log.events).configuration
    assert config.stale_timeout_seconds == 60
    assert config.load_balancing is False
    assert config.web_stale_timeout_seconds == 86_400
    assert config.version == 2 and config.changed_position == 2


def test_timeout_marks_stale_since_and_recovery_or_heartbeat_clears_it():
    log = Log()
    log.heartbeat()
    expiry = T0 + timedelta(minutes=5)
    log.advance(minutes=6)
    log.timed_out("srv1", "service", expiry)
    assert fold(log.events).component("srv1", "service").timed_out_at == expiry
    log.recovered("srv1", "service", expiry)
    assert fold(log.events).component("srv1", "service").timed_out_at is None

    log.timed_out("srv1", "service", expiry)
    log.heartbeat()
    assert fold(log.events).component("srv1", "service").timed_out_at is None


def test_fold_continues_from_a_given_state_like_one_long_fold():
    log = Log()
    for i in range(6):
        log.heartbeat(f"srv{i % 3}", ("web", "service")[i % 2])
        log.advance(seconds=30)
    log.remove("srv0", "web")
    whole = fold(log.events)
    head = fold(log.events[:3])
    assert fold(log.events[3:], head.copy()) == whole


def test_snapshot_serialisation_round_trips():
    log = Log()
    log.heartbeat("srv1", "web", message="hi", ip="10.0.0.1")
    log.configure(stale_timeout_seconds=120)
    log.advance(minutes=10)
    log.timed_out("srv1", "web", T0 + timedelta(minutes=2))
    log.resumed(T0)
    state = fold(log.events)
    import orjson

    assert ClusterState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


def test_apply_ignores_events_it_does_not_know_but_moves_the_position():
    log = Log()
    log.heartbeat()
    state = fold(log.events)

    class Unknown:
        pass

    recorded = log.events[0].__class__(
        *[getattr(log.events[0], f) for f in log.events[0].__slots__]
    )
    object.__setattr__(recorded, "event", Unknown())
    object.__setattr__(recorded, "position", 9)
    apply(state, recorded)
    assert state.position == 9 and len(list(state.components())) == 1


def test_snapshot_encoding_round_trips_and_reads_the_old_format():
    import zlib

    import orjson

    from projections.readmodel import snapshots

    log = Log()
    log.heartbeat("srv1", "web", message="hi", ip="10.0.0.1")
    log.heartbeat("srv2", "service", status="error")
    log.configure(stale_timeout_seconds=120)
    log.advance(minutes=10)
    log.timed_out("srv1", "web", T0 + timedelta(minutes=2))
    log.resumed(T0)
    state = fold(log.events)
    assert snapshots.decode(snapshots.encode(state)) == state
    old = zlib.compress(orjson.dumps(state.to_dict()))
    assert snapshots.decode(old) == state
